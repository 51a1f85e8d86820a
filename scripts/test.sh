#!/usr/bin/env bash
# Sets everything up on a fresh machine (idempotent, see setup.sh) and runs the whole test suite,
# including the tests that drive a real ComfyUI server over HTTP. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
