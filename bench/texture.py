"""Texture benchmark: how true the baked colours are, and how long baking takes.

    .venv/bin/python bench/texture.py [--photo 512] [--quality 5] [--timing-quality 8]
                                      [--skip-accuracy] [--skip-timing]

Objects of known colour (a box, a sphere, a torus, a solid made by the inflate generator;
every face one colour) are photographed from the views (ray cast by Embree, unlit,
anti-aliased, RGBA on a green background), the bare mesh is textured from those photos, and
the texture is sampled at 20k random surface points and compared with the known colour in
CIEDE2000. Printed per object and set of views: the share of the area within ΔE < 10 over the
whole surface and over what the views see, the mean ΔE, and the texels that are black or of
the background's colour. The planar projection the baker replaced is measured the same way
(front photo; back = mirror). Timing: one bake of a ~60k-face mesh to a 2048² texture from
1, 4 and 6 views by a warm baker (its xatlas process started, as a service's is), wall and CPU
seconds, per step, and xatlas's CPU seconds in its child process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve_app.contracts.params import GenerationParams  # noqa: E402
from serve_app.pipeline.texture import atlas as atlas_module  # noqa: E402
from serve_app.pipeline.texture import baker as baker_module  # noqa: E402
from serve_app.pipeline.texture.baker import Baker  # noqa: E402
from serve_app.pipeline.texture.views import ViewName, align  # noqa: E402
from serve_app.pipeline.types import CancelToken, CutOut, TexturedMesh, no_progress  # noqa: E402
from tests.texture_objects import (  # noqa: E402
    ALL_VIEWS,
    OBJECTS,
    SIDE_VIEWS,
    ColouredMesh,
    bad_texels,
    generated,
    photographs,
    score,
    torus,
)

VIEW_SETS = {
    "4 side views": SIDE_VIEWS,
    "6 views": ALL_VIEWS,
    "front only": (ViewName.FRONT,),
}


def planar_projection(obj: ColouredMesh, front: CutOut, side: int) -> TexturedMesh:
    """The texturing the baker replaced: the front photo projected along Z onto every
    vertex (the back shows it mirrored), the outside of the subject filled with the nearest
    subject pixel. The mesh is placed over the photo by the silhouette alignment."""
    from PIL import Image
    from scipy import ndimage

    a = align(ViewName.FRONT, obj.vertices, front.mask)
    col, row = a.to_pixels(obj.vertices[:, 0], obj.vertices[:, 1])
    h, w = front.mask.shape
    _, (ri, ci) = ndimage.distance_transform_edt(~front.mask, return_indices=True)
    rgb = front.rgba[..., :3][ri, ci]
    k = min(side, max(h, w)) / max(h, w)
    size = (max(1, round(w * k)), max(1, round(h * k)))
    texture = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    uv = np.column_stack([col / w, 1.0 - row / h])
    return TexturedMesh(
        vertices=obj.vertices.astype(np.float32),
        faces=obj.faces,
        uv=np.clip(uv, 0, 1).astype(np.float32),
        texture=np.ascontiguousarray(texture),
    )


def accuracy(photo: int, quality: int) -> None:
    print(f"accuracy: {photo}-px photos, quality {quality}, 20k points, ΔE2000 < 10")
    print(
        f"{'object':<10} {'faces':>6} {'views':<14} {'whole':>7} {'seen':>7} "
        f"{'mean ΔE':>8} {'bad':>4}"
    )
    params = GenerationParams(quality=quality)
    for name, make in OBJECTS.items():
        obj = make()
        for label, views in VIEW_SETS.items():
            photos = photographs(obj, views, photo)
            for back in ("fill", "mirror") if label == "front only" else ("fill",):
                textured = Baker(back=back).texture(
                    photos, obj.mesh, params, no_progress, CancelToken()
                )
                s = score(obj, textured, views)
                shown = label + (" (mirror)" if back == "mirror" else "")
                print(
                    f"{name:<10} {len(obj.faces):>6} {shown:<14} {s.within:>7.1%} "
                    f"{s.within_seen:>7.1%} {s.mean_delta_e:>8.2f} "
                    f"{bad_texels(textured.texture):>4}"
                )
        front = photographs(obj, (ViewName.FRONT,), photo)["front"]
        planar = planar_projection(obj, front, baker_module.TEXTURE_SIDE[quality])
        p4 = score(obj, planar, SIDE_VIEWS)
        p1 = score(obj, planar, (ViewName.FRONT,))
        print(
            f"{name:<10} {len(obj.faces):>6} {'planar (old)':<14} {p4.within:>7.1%} "
            f"{p1.within_seen:>7.1%} {p4.mean_delta_e:>8.2f}    -   (seen: by the front)"
        )


class Steps:
    """Wall and CPU seconds of the baker's steps, by wrapping its module functions."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.xatlas = 0.0

    def wrap(self, owner: object, name: str, label: str) -> None:
        fn = getattr(owner, name)

        def timed(*args, **kwargs):
            w, c = time.perf_counter(), time.process_time()
            try:
                result = fn(*args, **kwargs)
            finally:
                self.wall[label] = self.wall.get(label, 0.0) + time.perf_counter() - w
                self.cpu[label] = self.cpu.get(label, 0.0) + time.process_time() - c
            if isinstance(result, atlas_module.Atlas):  # xatlas's CPU, in the child process
                self.xatlas = result.seconds
            return result

        setattr(owner, name, timed)


def timing(quality: int, photo: int) -> None:
    steps = Steps()
    steps.wrap(baker_module, "prepare", "views")
    steps.wrap(atlas_module.PendingAtlas, "result", "atlas wait")
    steps.wrap(baker_module, "rasterize", "texels")
    steps.wrap(baker_module, "unseen_colours", "diffusion")
    steps.wrap(baker_module, "inpaint_border", "inpaint")
    objects = {"torus": torus(major_sections=240, minor_sections=125), "generated": generated(7)}
    side = baker_module.TEXTURE_SIDE[quality]
    baker = Baker()
    baker.ready.result()  # a service's baker starts xatlas's child process when it is made
    print(
        f"\ntiming: {side}² texture, {photo}-px photos, a warm baker (its xatlas process started)"
        "\n(wall s / CPU s of this process + of xatlas in its child process, which unwraps"
        " while the views are prepared; per step: wall / CPU)"
    )
    for name, obj in objects.items():
        for label, views in (
            ("1 view", (ViewName.FRONT,)),
            ("4 views", SIDE_VIEWS),
            ("6 views", ALL_VIEWS),
        ):
            photos = photographs(obj, views, photo)
            steps.wall.clear()
            steps.cpu.clear()
            w, c = time.perf_counter(), time.process_time()
            textured = baker.texture(
                photos, obj.mesh, GenerationParams(quality=quality), no_progress, CancelToken()
            )
            wall, cpu = time.perf_counter() - w, time.process_time() - c
            parts = ", ".join(f"{k} {steps.wall[k]:.2f}/{steps.cpu[k]:.2f}" for k in steps.wall)
            print(
                f"{name} ({len(obj.faces)} faces), {label}: {wall:.2f} / {cpu:.2f}"
                f" + {steps.xatlas:.2f}  [{parts}]  ({len(textured.uv)} vertices)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photo", type=int, default=512, help="photo side in pixels")
    parser.add_argument("--quality", type=int, default=5, help="quality of the accuracy runs")
    parser.add_argument("--timing-quality", type=int, default=8, help="8: a 2048² texture")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    if not args.skip_accuracy:
        accuracy(args.photo, args.quality)
    if not args.skip_timing:
        timing(args.timing_quality, args.photo)


if __name__ == "__main__":
    main()
