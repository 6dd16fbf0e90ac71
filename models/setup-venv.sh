#!/usr/bin/env bash
# Create or update the project venv at <repo>/.venv.
#   models/setup-venv.sh         CI requirements (torch-free): onnxruntime, onnx, numpy, tokenizers, pytest
#   models/setup-venv.sh --dev   dev requirements: + torch (CUDA build from PyPI, ~3 GB), transformers, ...
# Idempotent: re-running with unchanged requirement files does nothing (a stamp holds their hash).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
venv="$repo/.venv"
req="$here/requirements-ci.txt"
kind=ci
for arg in "$@"; do
  case "$arg" in
    --dev) req="$here/requirements-dev.txt"; kind=dev ;;
    -h|--help) sed -n 2,6p "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
hash="$(cat "$here/requirements-ci.txt" "$req" | sha256sum | cut -d' ' -f1)"
stamp="$venv/.bertling-$kind.stamp"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
  echo "venv $venv up to date ($kind)"
  exit 0
fi
"$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req"
echo "$hash" > "$stamp"
"$venv/bin/python" -c "import onnxruntime, tokenizers, numpy, onnx; print('venv ok:', 'onnxruntime', onnxruntime.__version__, 'tokenizers', tokenizers.__version__, 'numpy', numpy.__version__, 'onnx', onnx.__version__)"
