"""Third-party browser assets copied from node_modules into serve_app/web/vendor/.

The studio and the API docs load no file from a CDN: ``scripts/setup.sh web`` runs
``python -m serve_app.web.assets`` to copy the files below (pinned by package-lock.json)
into ``vendor/``, which is git-ignored. The copy is stamped with a hash of its sources and
returns at once when nothing changed. Standard library only: it runs before any venv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

WEB_DIR = Path(__file__).resolve().parent
VENDOR_DIR = WEB_DIR / "vendor"
STAMP_NAME = ".stamp"

#: vendor path -> path under node_modules. Every relative import of a vendored module must
#: itself be vendored at the same relative place (checked by ``unresolved_imports``).
VENDORED: dict[str, str] = {
    "three/build/three.module.js": "three/build/three.module.js",
    "three/build/three.core.js": "three/build/three.core.js",
    "three/addons/loaders/GLTFLoader.js": "three/examples/jsm/loaders/GLTFLoader.js",
    "three/addons/controls/OrbitControls.js": "three/examples/jsm/controls/OrbitControls.js",
    "three/addons/utils/BufferGeometryUtils.js": "three/examples/jsm/utils/BufferGeometryUtils.js",
    "three/addons/utils/SkeletonUtils.js": "three/examples/jsm/utils/SkeletonUtils.js",
    "three/LICENSE": "three/LICENSE",
    "swagger-ui/swagger-ui-bundle.js": "swagger-ui-dist/swagger-ui-bundle.js",
    "swagger-ui/swagger-ui.css": "swagger-ui-dist/swagger-ui.css",
    "swagger-ui/favicon-32x32.png": "swagger-ui-dist/favicon-32x32.png",
    "swagger-ui/LICENSE": "swagger-ui-dist/LICENSE",
}

#: The npm packages the files come from; their versions go into the stamp.
PACKAGES = ("three", "swagger-ui-dist")

_RELATIVE_IMPORT = re.compile(
    r"""(?:^|\s)(?:import|export)\b[^'"]*?from\s*['"](\.{1,2}/[^'"]+)['"]"""
)


class VendorError(RuntimeError):
    """A source file is missing or the vendored set is incomplete."""


def missing(vendor_dir: Path = VENDOR_DIR) -> list[str]:
    """Vendored paths that are not present under ``vendor_dir``."""
    return [name for name in VENDORED if not (vendor_dir / name).is_file()]


def unresolved_imports(vendor_dir: Path = VENDOR_DIR) -> list[str]:
    """``file -> import`` for each relative ES-module import that points at no vendored file."""
    problems = []
    for name in VENDORED:
        if not name.endswith(".js") or name.startswith("swagger-ui/"):
            continue
        text = (vendor_dir / name).read_text(encoding="utf-8")
        for target in _RELATIVE_IMPORT.findall(text):
            if not (vendor_dir / name).parent.joinpath(target).resolve().is_file():
                problems.append(f"{name} -> {target}")
    return problems


def source_key(node_modules: Path) -> str:
    """A hash of the manifest, the package versions and every source file's bytes."""
    digest = hashlib.sha256(json.dumps(VENDORED, sort_keys=True).encode())
    for package in PACKAGES:
        manifest = node_modules / package / "package.json"
        if not manifest.is_file():
            raise VendorError(f"{manifest} is missing: run `npm ci` (scripts/setup.sh node)")
        version = json.loads(manifest.read_text(encoding="utf-8"))["version"]
        digest.update(f"{package}@{version}\0".encode())
    for name, source in sorted(VENDORED.items()):
        path = node_modules / source
        if not path.is_file():
            raise VendorError(f"{path} is missing: run `npm ci` (scripts/setup.sh node)")
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def vendor(node_modules: Path, vendor_dir: Path = VENDOR_DIR) -> bool:
    """Copy the vendored files; return False when the stamp shows they are up to date."""
    key = source_key(node_modules)
    stamp = vendor_dir / STAMP_NAME
    if stamp.is_file() and stamp.read_text().strip() == key and not missing(vendor_dir):
        stamp.touch()  # newer than node_modules/.stamp, so make sees it up to date
        return False
    staging = vendor_dir.with_name(vendor_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for name, source in VENDORED.items():
        dest = staging / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(node_modules / source, dest)
    problems = unresolved_imports(staging)
    if problems:
        shutil.rmtree(staging, ignore_errors=True)
        raise VendorError(
            "vendored modules import files that are not vendored: " + ", ".join(problems)
        )
    (staging / STAMP_NAME).write_text(key + "\n")
    shutil.rmtree(vendor_dir, ignore_errors=True)
    staging.rename(vendor_dir)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node-modules", type=Path, default=Path("node_modules"))
    parser.add_argument("--dest", type=Path, default=VENDOR_DIR)
    args = parser.parse_args(argv)
    try:
        changed = vendor(args.node_modules, args.dest)
    except VendorError as exc:
        sys.stderr.write(f"vendor: ERROR: {exc}\n")
        return 1
    state = f"copied {len(VENDORED)} files" if changed else "up to date"
    sys.stdout.write(f"vendor: {args.dest} {state}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
