#!/usr/bin/env bash
# Builds the Raspberry Pi (64-bit OS) release binaries for aarch64-unknown-linux-gnu:
#   scripts/aarch64-build.sh          # bertling-run, the device build (no ONNX front end), + a stripped copy
#   scripts/aarch64-build.sh --full   # also the full `bertling` (with `compile`)
# Outputs: <target>/aarch64-unknown-linux-gnu/release/{bertling-run,bertling-run.stripped,bertling}.
# Run them here with scripts/aarch64-run.sh (qemu). Needs scripts/aarch64-setup.sh once.
set -euo pipefail
cd "$(dirname "$0")/.."
triple=aarch64-unknown-linux-gnu
out="${CARGO_TARGET_DIR:-$PWD/target}/$triple/release"

cargo build --release --target "$triple" -p bertling-tools --no-default-features --bin bertling-run
if [[ "${1:-}" == "--full" ]]; then
    cargo build --release --target "$triple" -p bertling-tools --bin bertling
fi
aarch64-linux-gnu-strip -o "$out/bertling-run.stripped" "$out/bertling-run"
bytes=$(stat -c %s "$out/bertling-run.stripped")
echo "aarch64 bertling-run (runtime only), stripped: $bytes bytes ($(awk "BEGIN{printf \"%.2f\", $bytes/1048576}") MiB)"
