#!/usr/bin/env bash
# Runs an aarch64 Linux binary under qemu-user as a Raspberry Pi would: the CPU model comes from
# BERTLING_QEMU_CPU, default `cortex-a72` (Pi 4: NEON, no dot product). For a Pi 5-like CPU (dot
# product, no SVE) use `max,sve=off`. Never qemu's default CPU: it reports SVE2, which no Pi has,
# and tract would pick SVE kernels.
#   scripts/aarch64-run.sh target/aarch64-unknown-linux-gnu/release/bertling info model.bertling
#   BERTLING_QEMU_CPU=max,sve=off scripts/aarch64-run.sh ...
set -euo pipefail
qemu=$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true)
if [[ -z "$qemu" ]]; then
    echo "aarch64-run: qemu-aarch64 is missing; run scripts/setup.sh (apt-get install qemu-user)" >&2
    exit 127
fi
exec "$qemu" -L /usr/aarch64-linux-gnu -cpu "${BERTLING_QEMU_CPU:-cortex-a72}" "$@"
