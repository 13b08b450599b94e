"""Validate GLB files with the Khronos glTF-Validator (node, tests/tools/validate_gltf.mjs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "tests" / "tools" / "validate_gltf.mjs"
VALIDATOR_PACKAGE = REPO_ROOT / "node_modules" / "gltf-validator"


def validate_glb(
    path_or_bytes: str | os.PathLike[str] | bytes, *, timeout_s: float = 120.0
) -> dict:
    """Validate one glTF asset and return the validator's summary.

    ``path_or_bytes`` is a path to a .glb/.gltf file or the bytes of a GLB. The result has
    ``numErrors``, ``numWarnings``, ``numInfos``, ``numHints``, ``messages`` (at most 50,
    each with ``code``, ``message``, ``severity`` and a ``pointer`` or ``offset``),
    ``truncated``, ``info`` (counts of draw calls, vertices, materials, ...) and
    ``validatorVersion``. A file that is not glTF at all gives one error, code
    ``UNRECOGNISED_ASSET``. Raises ``RuntimeError`` when the validator cannot run.
    """
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH; the glTF validator needs Node.js 20+")
    if not VALIDATOR_PACKAGE.is_dir():
        raise RuntimeError(f"{VALIDATOR_PACKAGE} is missing; run `make setup`")

    if isinstance(path_or_bytes, bytes | bytearray | memoryview):
        cmd, stdin = [node, str(SCRIPT), "-"], bytes(path_or_bytes)
    else:
        cmd, stdin = [node, str(SCRIPT), os.fspath(path_or_bytes)], None

    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout_s, check=False)
    if proc.returncode not in (0, 1):
        raise RuntimeError(
            f"glTF validator exited with {proc.returncode}: {proc.stderr.decode(errors='replace')}"
        )
    return json.loads(proc.stdout)
