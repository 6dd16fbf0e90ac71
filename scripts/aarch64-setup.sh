#!/usr/bin/env bash
# Installs what the aarch64 (Raspberry Pi 64-bit) cross build and its qemu tests need, if missing:
# rustup's aarch64-unknown-linux-gnu target, Debian's cross gcc (the linker, and the assembler for
# tract's NEON kernels; nothing needs g++), qemu-user, and dpkg-deb for the package.
# Called by scripts/setup.sh and scripts/test.sh; safe to re-run.
set -euo pipefail

if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
    rustup target add aarch64-unknown-linux-gnu
fi

need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v aarch64-linux-gnu-strip >/dev/null || need+=(binutils-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || command -v qemu-aarch64-static >/dev/null || need+=(qemu-user)
command -v dpkg-deb >/dev/null || need+=(dpkg)
if ((${#need[@]})); then
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    echo "aarch64-setup: installing ${need[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
