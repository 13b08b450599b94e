"""Preview images of a textured mesh, rendered off-screen by VTK (OpenGL through EGL).

VTK's physically based shading draws the model with its texture (or plain colour) and its
metallic and roughness factors, lit by a light kit (key, fill, back and head lights; no
environment map: prefiltering one costs seconds per image on a CPU), framed to fill the
image from the asked direction. No
display is needed: the render window is VTK's EGL one, which runs on Mesa's llvmpipe on
a CPU-only machine (Debian: libegl1, libegl-mesa0, libgl1-mesa-dri); where a GPU driver
installs its own EGL vendor library, libglvnd may choose that one instead. Renders are
serialised within a process.
"""

from __future__ import annotations

import io
import math
import threading
from typing import Any

import numpy as np

from serve_app.errors import ModelUnavailableError, ValidationFailedError
from serve_app.meshtools.config import MAX_SIDE, MIN_SIDE, TRANSPARENT
from serve_app.meshtools.materials import parse_hex_color
from serve_app.pipeline.appearance import srgb_to_linear
from serve_app.pipeline.types import TexturedMesh

#: How much of the image the model's bounding sphere fills, across its shorter side.
_FILL = 1.0
_RENDER_LOCK = threading.Lock()
#: The key light's intensity. VTK's PBR shading divides the diffuse term by π, so a
#: white surface facing a light of intensity π shows white.
KEY_LIGHT = 2.5


def render_preview(
    mesh: TexturedMesh,
    width: int = 512,
    height: int = 512,
    azimuth_deg: float = 30.0,
    elevation_deg: float = 20.0,
    background: str = "#ffffff",
) -> bytes:
    """A PNG of ``mesh`` seen from ``azimuth_deg`` (about +Y, 0 = from +Z, the front;
    90 = from +X) and ``elevation_deg`` (-90 below .. 90 above), ``width`` × ``height``
    pixels (64 to 2048 each), on ``background`` ("#rrggbb", or "transparent": RGBA with
    alpha 0 off the model). Raises ValidationFailedError (422) for bad arguments and
    ModelUnavailableError (503) when no OpenGL context can be made.
    """
    for name, side in (("width", width), ("height", height)):
        if not MIN_SIDE <= side <= MAX_SIDE:
            raise ValidationFailedError(f"{name} must lie between {MIN_SIDE} and {MAX_SIDE}")
    if not (math.isfinite(azimuth_deg) and -90.0 <= elevation_deg <= 90.0):
        raise ValidationFailedError("elevation_deg must lie in [-90, 90], azimuth_deg finite")
    transparent = background == TRANSPARENT
    backdrop = (255, 255, 255) if transparent else parse_hex_color(background)
    with _RENDER_LOCK:
        rgba = _render(mesh, width, height, azimuth_deg, elevation_deg, backdrop, transparent)
    from PIL import Image

    image = Image.fromarray(rgba if transparent else np.ascontiguousarray(rgba[..., :3]))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _render(
    mesh: TexturedMesh,
    width: int,
    height: int,
    azimuth_deg: float,
    elevation_deg: float,
    backdrop: tuple[int, int, int],
    transparent: bool,
) -> np.ndarray:
    """(height, width, 4) uint8 RGBA, top row first."""
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL classes)
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper, vtkRenderer
    from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter as ToImage
    from vtkmodules.vtkRenderingOpenGL2 import vtkEGLRenderWindow

    window = vtkEGLRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(width, height)
    window.SetMultiSamples(0)
    window.SetAlphaBitPlanes(1)
    if not window.SupportsOpenGL():
        window.Finalize()
        raise ModelUnavailableError(
            "no OpenGL context for previews: install EGL (Debian: libegl1 libegl-mesa0 "
            "libgl1-mesa-dri)",
            feature="preview",
        )
    try:
        mapper = vtkPolyDataMapper()
        mapper.SetInputData(_polydata(mesh))
        actor = vtkActor()
        actor.SetMapper(mapper)
        _material(actor.GetProperty(), mesh)
        renderer = vtkRenderer()
        renderer.AddActor(actor)
        renderer.SetBackground(*(c / 255.0 for c in backdrop))
        renderer.SetBackgroundAlpha(0.0 if transparent else 1.0)
        renderer.UseFXAAOn()
        _lights(renderer)
        window.AddRenderer(renderer)
        _frame(renderer, mesh, width / height, azimuth_deg, elevation_deg)
        window.Render()
        grab = ToImage()
        grab.SetInput(window)
        grab.SetInputBufferTypeToRGBA()
        grab.ReadFrontBufferOff()
        grab.Update()
        pixels = vtk_to_numpy(grab.GetOutput().GetPointData().GetScalars())
        rgba = np.asarray(pixels, dtype=np.uint8).reshape(height, width, 4)[::-1]
        return np.ascontiguousarray(rgba)
    finally:
        window.Finalize()


def _polydata(mesh: TexturedMesh) -> Any:
    """The mesh as vtkPolyData with texture coordinates and smooth normals (split at
    creases sharper than 45°, so a cube keeps its edges)."""
    from vtkmodules.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
    from vtkmodules.vtkFiltersCore import vtkPolyDataNormals

    points = vtkPoints()
    points.SetData(numpy_to_vtk(np.ascontiguousarray(mesh.vertices, dtype=np.float32), deep=1))
    offsets = np.arange(0, 3 * len(mesh.faces) + 1, 3, dtype=np.int64)
    connectivity = np.ascontiguousarray(mesh.faces.reshape(-1), dtype=np.int64)
    cells = vtkCellArray()
    cells.SetData(
        numpy_to_vtkIdTypeArray(offsets, deep=1), numpy_to_vtkIdTypeArray(connectivity, deep=1)
    )
    poly = vtkPolyData()
    poly.SetPoints(points)
    poly.SetPolys(cells)
    tcoords = numpy_to_vtk(np.ascontiguousarray(mesh.uv, dtype=np.float32), deep=1)
    tcoords.SetName("uv")
    poly.GetPointData().SetTCoords(tcoords)
    normals = vtkPolyDataNormals()
    normals.SetInputData(poly)
    normals.SetFeatureAngle(45.0)
    normals.ConsistencyOff()
    normals.AutoOrientNormalsOff()
    normals.Update()
    return normals.GetOutput()


def _material(prop: Any, mesh: TexturedMesh) -> None:
    """PBR factors, and the texture (sRGB, mipmapped) unless a plain colour replaced it."""
    prop.SetInterpolationToPBR()
    prop.SetMetallic(float(mesh.metallic))
    prop.SetRoughness(float(mesh.roughness))
    if mesh.base_color is not None:
        prop.SetColor(*srgb_to_linear(mesh.base_color))
        return
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkRenderingCore import vtkTexture

    h, w = mesh.texture.shape[:2]
    rows = np.ascontiguousarray(mesh.texture[::-1, :, :3], dtype=np.uint8).reshape(-1, 3)
    image = vtkImageData()
    image.SetDimensions(w, h, 1)
    image.GetPointData().SetScalars(numpy_to_vtk(rows, deep=1))
    texture = vtkTexture()
    texture.SetInputData(image)
    texture.InterpolateOn()
    texture.MipmapOn()
    texture.RepeatOff()  # UVs lie in [0, 1]: the rim samples the edge, not the far side
    texture.EdgeClampOn()
    texture.UseSRGBColorSpaceOn()
    prop.SetColor(1.0, 1.0, 1.0)
    prop.SetBaseColorTexture(texture)


def _lights(renderer: Any) -> None:
    """VTK's light kit: a key light above and to the side, fill, back and head lights."""
    from vtkmodules.vtkRenderingCore import vtkLightKit

    kit = vtkLightKit()
    kit.SetKeyLightIntensity(KEY_LIGHT)
    kit.AddLightsToRenderer(renderer)


def _frame(
    renderer: Any, mesh: TexturedMesh, aspect: float, azimuth_deg: float, elevation_deg: float
) -> None:
    """Look at the bounding box's centre from the asked direction, +Y up, at the distance
    where the bounding sphere fills the image's shorter side."""
    lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    centre = (lo + hi) / 2.0
    radius = max(float(np.linalg.norm(hi - lo)) / 2.0, 1e-6)
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    direction = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
    up = np.array([0.0, 1.0, 0.0]) - math.sin(el) * direction
    if np.linalg.norm(up) < 1e-6:  # straight above or below: the front faces down the image
        up = -math.copysign(1.0, el) * np.array([math.sin(az), 0.0, math.cos(az)])
    camera = renderer.GetActiveCamera()
    view_angle = 30.0
    half = math.radians(view_angle / 2.0)
    if aspect < 1.0:  # the vertical angle is fixed; a narrow image narrows the horizontal
        half = math.atan(math.tan(half) * aspect)
    distance = radius / (math.sin(half) * _FILL)
    camera.SetViewAngle(view_angle)
    camera.SetFocalPoint(*centre)
    camera.SetPosition(*(centre + distance * direction))
    camera.SetViewUp(*(up / np.linalg.norm(up)))
    renderer.ResetCameraClippingRange()
