#!/usr/bin/env bash
# Prepares everything on a fresh machine: the Python venv (onnxruntime, tokenizers, numpy: no torch),
# the release build of the `bertling` command, and the default model file.
#   scripts/setup.sh          # everything the main job and the tests need
#   scripts/setup.sh --dev    # also torch + transformers (~3 GB), to regenerate fixtures and base models
set -euo pipefail
cd "$(dirname "$0")/.."

dev=""
[[ "${1:-}" == "--dev" ]] && dev="--dev"

if ! command -v cargo >/dev/null; then
    echo "setup: cargo is missing; install Rust with rustup first" >&2
    exit 1
fi

bash models/setup-venv.sh $dev
# The Raspberry Pi cross build: rustup target, Debian cross gcc, qemu-user (scripts/aarch64-build.sh).
bash scripts/aarch64-setup.sh
cargo build --release -p bertling-tools
bash scripts/default-model.sh target/release/bertling
echo
echo "ready. try:  target/release/bertling fill target/models/default.bertling \"The capital of France is [MASK].\""
