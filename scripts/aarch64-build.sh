#!/usr/bin/env bash
# Builds the Raspberry Pi (64-bit OS) binaries for aarch64-unknown-linux-gnu:
#   scripts/aarch64-build.sh          # the device binaries: bertling-run (no ONNX front end) and bertling-kiosk
#   scripts/aarch64-build.sh --full   # also the full `bertling` (with `compile`), release profile
# The device binaries use the `release-small` profile (Cargo.toml: fat LTO, one codegen unit,
# panic=abort, stripped; sizes and speed in BENCHMARKS.md) and land in
# <target>/aarch64-unknown-linux-gnu/release-small/{bertling-run,bertling-kiosk}, already stripped.
# `--full` stays on `release` (<target>/aarch64-unknown-linux-gnu/release/bertling): `compile`
# catches tract-onnx's panics, which panic=abort would not allow.
# Run them here with scripts/aarch64-run.sh (qemu). Needs scripts/aarch64-setup.sh once.
set -euo pipefail
cd "$(dirname "$0")/.."
triple=aarch64-unknown-linux-gnu
out="${CARGO_TARGET_DIR:-$PWD/target}/$triple/release-small"

# One cargo invocation, so both binaries share one feature resolution (and one tract build).
cargo build --profile release-small --target "$triple" --no-default-features \
    -p bertling-tools --bin bertling-run -p bertling-kiosk --bin bertling-kiosk
if [[ "${1:-}" == "--full" ]]; then
    cargo build --release --target "$triple" -p bertling-tools --bin bertling
fi
for bin in bertling-run bertling-kiosk; do
    bytes=$(stat -c %s "$out/$bin")
    echo "aarch64 $bin (release-small, stripped): $bytes bytes ($(awk "BEGIN{printf \"%.2f\", $bytes/1048576}") MiB)"
done
