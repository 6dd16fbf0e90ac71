#!/usr/bin/env bash
# Builds the arm64 Debian package (Raspberry Pi OS 64-bit / Debian arm64) from a staged tree with
# dpkg-deb, then checks its contents with dpkg-deb and runs the packaged binaries under qemu.
#   scripts/package-deb.sh            # -> <target>/deb/bertling_<version>_arm64.deb
# Contents: /usr/bin/bertling (the device build `bertling-run`: runs model files, no ONNX front
# end), /usr/bin/bertling-kiosk (the kiosk daemon, firmware-host/), its systemd unit
# /lib/systemd/system/bertling-kiosk.service (installed, not enabled: it needs a model and the
# panel's wiring first; see docs/raspberry-pi.md), the `bertling` system user for it
# (/usr/lib/sysusers.d/bertling.conf, created by postinst), /var/lib/bertling/ (where the unit
# looks for the model) and /usr/share/doc/bertling/ (README, Raspberry Pi guide, model format,
# kiosk README and wire protocol, copyright). Both binaries are built with the `release-small`
# profile (scripts/aarch64-build.sh).
# Needs scripts/aarch64-setup.sh once.
set -euo pipefail
cd "$(dirname "$0")/.."
triple=aarch64-unknown-linux-gnu
target="${CARGO_TARGET_DIR:-$PWD/target}"
out="$target/$triple/release-small"

bash scripts/aarch64-build.sh

version=$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "bertling-tools"))')
stage="$target/deb/stage"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/share/doc/bertling" "$stage/lib/systemd/system" \
    "$stage/usr/lib/sysusers.d" "$stage/var/lib/bertling"
install -m 0755 "$out/bertling-run" "$stage/usr/bin/bertling"
install -m 0755 "$out/bertling-kiosk" "$stage/usr/bin/bertling-kiosk"
# The kiosk's unit as firmware-host/ keeps it (for a hand install into /usr/local/bin), with the
# package's paths; checked below, so a changed unit cannot silently keep the old ones.
sed -e 's|/usr/local/bin/bertling-kiosk|/usr/bin/bertling-kiosk|' \
    -e 's|file:///opt/bertling/docs/protocol.md|file:///usr/share/doc/bertling/protocol.md|' \
    firmware-host/systemd/bertling-kiosk.service >"$stage/lib/systemd/system/bertling-kiosk.service"
chmod 0644 "$stage/lib/systemd/system/bertling-kiosk.service"
install -m 0644 packaging/deb/sysusers.conf "$stage/usr/lib/sysusers.d/bertling.conf"
for script in postinst prerm postrm; do
    install -m 0755 "packaging/deb/$script" "$stage/DEBIAN/$script"
done
install -m 0644 firmware-host/README.md "$stage/usr/share/doc/bertling/kiosk.md"
for doc in README.md docs/raspberry-pi.md docs/model-format.md docs/protocol.md; do
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
expected=(./usr/bin/bertling ./usr/bin/bertling-kiosk ./lib/systemd/system/bertling-kiosk.service
    ./usr/lib/sysusers.d/bertling.conf ./var/lib/bertling/ ./usr/share/doc/bertling/README.md
    ./usr/share/doc/bertling/raspberry-pi.md ./usr/share/doc/bertling/model-format.md
    ./usr/share/doc/bertling/protocol.md ./usr/share/doc/bertling/kiosk.md ./usr/share/doc/bertling/copyright)
for path in "${expected[@]}"; do
    grep -q " $path\$" <<<"$contents" || fail "$path is not in $deb"
done
for bin in bertling bertling-kiosk; do
    grep -q "^-rwxr-xr-x root/root .* ./usr/bin/$bin\$" <<<"$contents" || fail "/usr/bin/$bin is not root-owned 0755"
done
grep -q '^-rw-r--r-- root/root .* ./lib/systemd/system/bertling-kiosk.service$' <<<"$contents" ||
    fail "the kiosk unit is not root-owned 0644"
control=$(dpkg-deb --ctrl-tarfile "$deb" | tar -t)
for script in postinst prerm postrm; do
    grep -qx "./$script" <<<"$control" || fail "DEBIAN/$script is not in $deb"
done
check="$target/deb/check"
rm -rf "$check"
dpkg-deb -x "$deb" "$check"
for bin in bertling bertling-kiosk; do
    file_out=$(file -b "$check/usr/bin/$bin" 2>/dev/null || true)
    [[ -z "$file_out" || "$file_out" == *"ARM aarch64"* ]] || fail "/usr/bin/$bin is not an aarch64 binary: $file_out"
    BERTLING_QEMU_CPU=cortex-a72 scripts/aarch64-run.sh "$check/usr/bin/$bin" --version | grep -q "^$bin $version" ||
        fail "the packaged $bin does not run under qemu -cpu cortex-a72"
done
unit="$check/lib/systemd/system/bertling-kiosk.service"
grep -q '^ExecStart=/usr/bin/bertling-kiosk ' "$unit" || fail "the kiosk unit does not start /usr/bin/bertling-kiosk"
grep -q '^Documentation=file:///usr/share/doc/bertling/protocol.md$' "$unit" || fail "the kiosk unit's Documentation is not the packaged protocol.md"
! grep -q '/usr/local\|/opt/' "$unit" || fail "the kiosk unit names a path outside the package: $(grep '/usr/local\|/opt/' "$unit")"
echo "package-deb: $deb ($(stat -c %s "$deb") bytes), depends on libc6 >= $glibc; contents:"
sed 's/^/  /' <<<"$contents"
