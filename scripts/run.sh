#!/usr/bin/env bash
# `make run`: start the service on this machine (local Ray, CPU) with configs/local.yaml.
# Extra arguments go to `serve run` (e.g. --non-blocking). Stop it with Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."

SERVE=.venv/bin/serve
[[ -x $SERVE ]] || { echo "run: $SERVE is missing; run 'make setup' first" >&2; exit 1; }

# Ray runs its workers at niceness 15 by default; on a small machine that starves the
# API next to the compute replicas. The config sets the compute replicas' niceness itself.
export RAY_worker_niceness=${RAY_worker_niceness:-0}

echo "run: starting ORFEAS Serve with configs/local.yaml"
echo "run: studio http://127.0.0.1:8000/  API docs http://127.0.0.1:8000/api/docs"
exec "$SERVE" run configs/local.yaml "$@"
