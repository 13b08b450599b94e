"""Keep configs/kuberay/rayservice.yaml in step with serve_config.yaml and configs/serve.env.

The RayService's ``serveConfigV2`` is ``serve_config.yaml`` (below its header comment) and
every container's ``env`` is ``configs/serve.env``; the rest of the manifest is written by
hand. After changing either source, regenerate those blocks:

    python scripts/kuberay.py           # rewrite the manifest's serveConfigV2 and env blocks
    python scripts/kuberay.py --check   # exit 1, saying what is stale, if it is out of date

Only the standard library and PyYAML (to check the result parses) are used.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVE_CONFIG = REPO_ROOT / "serve_config.yaml"
SERVE_ENV = REPO_ROOT / "configs" / "serve.env"
MANIFEST = REPO_ROOT / "configs" / "kuberay" / "rayservice.yaml"

_SERVE_CONFIG_KEY = re.compile(r"^(?P<indent> *)serveConfigV2: \|[-+]?\s*$")
_ENV_KEY = re.compile(r"^(?P<indent> *)env:\s*$")
_ENV_LINE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")


def serve_env(path: Path = SERVE_ENV) -> list[tuple[str, str]]:
    """The ``NAME=value`` lines of an env file, in order (comments and blanks skipped)."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _ENV_LINE.match(line.strip())
        if match:
            pairs.append((match["key"], match["value"].strip()))
    return pairs


def serve_config_body(path: Path = SERVE_CONFIG) -> str:
    """The Serve config file without its leading comment block (its settings and notes)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = 0
    while start < len(lines) and (not lines[start].strip() or lines[start].startswith("#")):
        start += 1
    return "\n".join(lines[start:]).rstrip() + "\n"


def _replace_blocks(
    text: str, key: re.Pattern[str], render: Callable[[str], list[str]]
) -> tuple[str, int]:
    """Replace the indented block under each line matching ``key`` by ``render(indent)``.

    A block is every following line that is blank or indented deeper than the key line.
    Returns the new text and how many blocks were replaced.
    """
    lines = text.splitlines()
    out: list[str] = []
    count = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        match = key.match(line)
        if not match:
            continue
        indent = match["indent"]
        start = i
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip(" ")) > len(indent)
        ):
            i += 1
        while i > start and not lines[i - 1].strip():
            i -= 1  # blank lines after the block stay where they are
        out.extend(render(indent))
        count += 1
    return "\n".join(out) + "\n", count


def render_manifest(manifest: str, serve_config: str, env: list[tuple[str, str]]) -> str:
    """``manifest`` with its serveConfigV2 block set to ``serve_config`` and each env to ``env``."""

    def config_block(indent: str) -> list[str]:
        inner = indent + "  "
        return [inner + line if line.strip() else "" for line in serve_config.splitlines()]

    def env_block(indent: str) -> list[str]:
        inner = indent + "  "
        lines = []
        for name, value in env:
            lines.append(f"{inner}- name: {name}")
            lines.append(f"{inner}  value: {json.dumps(value)}")
        return lines

    text, configs = _replace_blocks(manifest, _SERVE_CONFIG_KEY, config_block)
    if configs != 1:
        raise ValueError(f"expected one 'serveConfigV2: |' block in the manifest, found {configs}")
    text, envs = _replace_blocks(text, _ENV_KEY, env_block)
    if envs == 0:
        raise ValueError("found no container 'env:' block in the manifest")
    yaml.safe_load(text)  # the result must still parse
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is stale")
    parser.add_argument("--serve-config", type=Path, default=SERVE_CONFIG)
    parser.add_argument("--serve-env", type=Path, default=SERVE_ENV)
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    args = parser.parse_args(argv)

    current = args.manifest.read_text(encoding="utf-8")
    wanted = render_manifest(
        current, serve_config_body(args.serve_config), serve_env(args.serve_env)
    )
    if wanted == current:
        sys.stdout.write(f"{args.manifest}: up to date\n")
        return 0
    if args.check:
        sys.stderr.write(
            f"{args.manifest} is out of date with {args.serve_config.name} or "
            f"{args.serve_env.name}: run `python scripts/kuberay.py`\n"
        )
        return 1
    args.manifest.write_text(wanted, encoding="utf-8")
    sys.stdout.write(f"{args.manifest}: serveConfigV2 and env regenerated\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
