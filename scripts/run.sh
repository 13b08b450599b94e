#!/usr/bin/env bash
# `make run`: turn a sample photo (scikit-image's astronaut) into a 3D model with the CLI.
# Extra arguments go to `python -m serve_app generate` (e.g. --format obj --quality 5).
set -euo pipefail

cd "$(dirname "$0")/.."

PY=.venv/bin/python
OUT=out
PHOTO=$OUT/astronaut.png

[[ -x $PY ]] || { echo "run: $PY is missing; run 'make setup' first" >&2; exit 1; }
export U2NET_HOME=${U2NET_HOME:-$PWD/models}

mkdir -p "$OUT"
if [[ ! -f $PHOTO ]]; then
  "$PY" -c '
import sys
from PIL import Image
from skimage import data
Image.fromarray(data.astronaut()).save(sys.argv[1])
' "$PHOTO"
  echo "run: sample photo $PHOTO"
fi

marker=$(mktemp)
trap 'rm -f "$marker"' EXIT
"$PY" -m serve_app generate "$PHOTO" -o "$OUT/" "$@"

mapfile -t made < <(find "$OUT" -type f -newer "$marker" ! -path "$PHOTO" | sort)
if [[ ${#made[@]} -eq 0 ]]; then
  echo "run: the CLI finished but wrote no new file under $OUT/" >&2
  exit 1
fi
for f in "${made[@]}"; do
  echo "run: model written to $f"
done
