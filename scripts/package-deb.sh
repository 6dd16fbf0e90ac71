#!/usr/bin/env bash
# Builds the arm64 Debian package (Raspberry Pi OS 64-bit / Debian arm64) from a staged tree with
# dpkg-deb, then checks its contents with dpkg-deb and runs the packaged binary under qemu.
#   scripts/package-deb.sh            # -> <target>/deb/bertling_<version>_arm64.deb
# Contents: /usr/bin/bertling (the device build `bertling-run`, stripped: runs model files, no
# ONNX front end), /usr/share/doc/bertling/ (README, Raspberry Pi guide, model format, copyright).
# Needs scripts/aarch64-setup.sh once; builds with scripts/aarch64-build.sh.
#
# TODO(kiosk): the kiosk daemon (firmware-host/, binary `bertling-kiosk`) has no systemd unit yet.
# When its unit exists at packaging/deb/bertling-kiosk.service, this script cross-builds
# `bertling-kiosk`, installs it as /usr/bin/bertling-kiosk and the unit as
# /lib/systemd/system/bertling-kiosk.service, and checks both below (the block marked KIOSK).
set -euo pipefail
cd "$(dirname "$0")/.."
triple=aarch64-unknown-linux-gnu
target="${CARGO_TARGET_DIR:-$PWD/target}"
release="$target/$triple/release"

bash scripts/aarch64-build.sh
kiosk_unit=packaging/deb/bertling-kiosk.service
kiosk=""
if [[ -f "$kiosk_unit" && -f firmware-host/Cargo.toml ]]; then # KIOSK
    cargo build --release --target "$triple" -p bertling-kiosk --bin bertling-kiosk
    kiosk=1
fi

version=$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "bertling-tools"))')
stage="$target/deb/stage"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/share/doc/bertling"
install -m 0755 "$release/bertling-run.stripped" "$stage/usr/bin/bertling"
if [[ -n "$kiosk" ]]; then # KIOSK
    mkdir -p "$stage/lib/systemd/system"
    aarch64-linux-gnu-strip -o "$stage/usr/bin/bertling-kiosk" "$release/bertling-kiosk"
    chmod 0755 "$stage/usr/bin/bertling-kiosk"
    install -m 0644 "$kiosk_unit" "$stage/lib/systemd/system/bertling-kiosk.service"
fi
for doc in README.md docs/raspberry-pi.md docs/model-format.md; do
    install -m 0644 "$doc" "$stage/usr/share/doc/bertling/"
done
install -m 0644 packaging/deb/copyright "$stage/usr/share/doc/bertling/copyright"

# The newest glibc symbol version the binaries need is the libc6 they depend on.
glibc=$(aarch64-linux-gnu-objdump -T "$stage"/usr/bin/* | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
size_kb=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@DEPENDS@/libc6 (>= $glibc)/" -e "s/@SIZE_KB@/$size_kb/" \
    packaging/deb/control.in >"$stage/DEBIAN/control"
deb="$target/deb/bertling_${version}_arm64.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null

# Check what was built: the control fields, every expected file, and the binary itself.
fail() { echo "package-deb: $*" >&2; exit 1; }
[[ $(dpkg-deb --field "$deb" Architecture) == arm64 ]] || fail "Architecture is not arm64"
[[ $(dpkg-deb --field "$deb" Package) == bertling ]] || fail "Package is not bertling"
[[ $(dpkg-deb --field "$deb" Version) == "$version" ]] || fail "Version is not $version"
contents=$(dpkg-deb --contents "$deb")
expected=(./usr/bin/bertling ./usr/share/doc/bertling/README.md ./usr/share/doc/bertling/raspberry-pi.md
    ./usr/share/doc/bertling/model-format.md ./usr/share/doc/bertling/copyright)
[[ -n "$kiosk" ]] && expected+=(./usr/bin/bertling-kiosk ./lib/systemd/system/bertling-kiosk.service)
for path in "${expected[@]}"; do
    grep -q " $path\$" <<<"$contents" || fail "$path is not in $deb"
done
grep -q '^-rwxr-xr-x root/root .* ./usr/bin/bertling$' <<<"$contents" || fail "/usr/bin/bertling is not root-owned 0755"
check="$target/deb/check"
rm -rf "$check"
dpkg-deb -x "$deb" "$check"
file_out=$(file -b "$check/usr/bin/bertling" 2>/dev/null || true)
[[ -z "$file_out" || "$file_out" == *"ARM aarch64"* ]] || fail "/usr/bin/bertling is not an aarch64 binary: $file_out"
BERTLING_QEMU_CPU=cortex-a72 scripts/aarch64-run.sh "$check/usr/bin/bertling" --version | grep -q "^bertling $version" ||
    fail "the packaged bertling does not run under qemu -cpu cortex-a72"
echo "package-deb: $deb ($(stat -c %s "$deb") bytes), depends on libc6 >= $glibc; contents:"
sed 's/^/  /' <<<"$contents"
