#!/usr/bin/env bash
# `make run`: start the service on this machine (local Ray, CPU) with configs/local.yaml.
# Extra arguments go to `serve run` (e.g. --non-blocking). Stop it with Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."

SERVE=.venv/bin/serve
[[ -x $SERVE ]] || { echo "run: $SERVE is missing; run 'make setup' first" >&2; exit 1; }

# Serve's own settings (HAProxy in front, direct ingress, ...): configs/serve.env, unless
# the environment already sets a variable.
while IFS= read -r line; do
  [[ $line =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
  [[ -v ${BASH_REMATCH[1]} ]] || export "${BASH_REMATCH[1]}=${BASH_REMATCH[2]}"
done < configs/serve.env

echo "run: starting ORFEAS Serve with configs/local.yaml"
echo "run: studio http://127.0.0.1:8000/  API docs http://127.0.0.1:8000/api/docs"
# Ray turns on token authentication for a local cluster: its dashboard asks for the token.
echo "run: Ray dashboard http://127.0.0.1:8265/ (Serve page: #/serve); it asks for Ray's token:"
echo "run:   .venv/bin/ray get-auth-token    (prints it, once the service has started)"
exec "$SERVE" run configs/local.yaml "$@"
