#!/usr/bin/env bash
# The runtime's x86 int8 unit tests on an emulated AVX512-VNNI CPU: the AVX512-VNNI kernels
# (`vpdpbusd`) cannot run on the machines bertling is built on, and qemu does not emulate them;
# Bochs does. This builds the runtime's unit-test binary static, boots Debian's kernel in Bochs
# with an initramfs whose /init (scripts/emulated-init.c) runs it, and reads the results from
# the emulated serial port.
#
#   scripts/emulated-avx512.sh                 # the tests matching `int8::`
#   scripts/emulated-avx512.sh int8::a8 wide   # other filters (libtest: any of them matches)
#
# Exits 0 only if the guest CPU reported avx512_vnni (and AVX512F/BW/VL) and every selected test
# passed. Installs its Debian packages itself; keeps the build, the kernel and the boot image
# under target/emulated/ (a second run reuses them). Environment: BERTLING_EMULATED_TIMEOUT
# (seconds for the boot and the tests, default 2400), BERTLING_EMULATED_CPU (a Bochs CPU model
# with AVX512-VNNI, default tigerlake), BERTLING_EMULATED_IPS (Bochs `ips`, default 100000000),
# BERTLING_EMULATED_KERNEL (the Debian kernel package, default linux-image-cloud-amd64: Debian's
# 6.1 kernel with fewer built-in drivers and LZ4, not XZ, compression: its boot takes about a
# minute here, linux-image-amd64's (which works too) over three), BERTLING_EMULATED_APPEND
# (more kernel arguments).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

timeout_s=${BERTLING_EMULATED_TIMEOUT:-2400}
cpu_model=${BERTLING_EMULATED_CPU:-tigerlake}
ips=${BERTLING_EMULATED_IPS:-100000000}
kernel_meta=${BERTLING_EMULATED_KERNEL:-linux-image-cloud-amd64}
filters=("$@")
((${#filters[@]})) || filters=(int8::)

export CARGO_TARGET_DIR="$PWD/target/emulated"
work="$CARGO_TARGET_DIR/bochs"
mkdir -p "$work"

say() { echo "emulated-avx512: $*" >&2; }
fail() {
    say "FAILED: $*"
    exit 1
}
started=$(date +%s)

# --- Packages (Debian bookworm) ------------------------------------------------------------
# bochs-term only satisfies bochs's need for a GUI package (else apt pulls in wxWidgets); the
# run itself uses the VNC display built into bochs, headless, in its own network namespace.
packages=(bochs bochs-term bochsbios vgabios isolinux syslinux-common xorriso cpio gcc libc6-dev
    binutils jq)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- The test binary, static ---------------------------------------------------------------
say "building the runtime's unit tests (static, release) in $CARGO_TARGET_DIR"
RUSTFLAGS="-C target-feature=+crt-static" cargo test -p bertling --lib --release \
    --target x86_64-unknown-linux-gnu --no-run --message-format=json >"$work/build.json"
exe=$(jq -r 'select(.reason == "compiler-artifact" and .profile.test and .executable != null)
    | .executable' "$work/build.json" | tail -n 1)
[[ -n "$exe" && -x "$exe" ]] || fail "cargo named no test executable (see $work/build.json)"
linkage=$(ldd "$exe" 2>&1 || true)
grep -Eq "not a dynamic executable|statically linked" <<<"$linkage" || fail "$exe is dynamic: $linkage"
built=$(date +%s)

# --- The kernel: Debian's, from its .deb (not installed) ----------------------------------
kernel_pkg=$(apt-cache depends "$kernel_meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [[ -z "$kernel_pkg" ]]; then
    apt-get update -qq
    kernel_pkg=$(apt-cache depends "$kernel_meta" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[[ -n "$kernel_pkg" ]] || fail "apt knows no kernel package behind $kernel_meta"
kernel="$work/kernel/$kernel_pkg/vmlinuz"
if [[ ! -s "$kernel" ]]; then
    say "fetching $kernel_pkg"
    rm -rf "$work/kernel/$kernel_pkg" "$work/dl"
    mkdir -p "$work/kernel/$kernel_pkg" "$work/dl"
    (cd "$work/dl" && apt-get download -o APT::Sandbox::User=root -qq "$kernel_pkg")
    dpkg -x "$work"/dl/"$kernel_pkg"_*.deb "$work/dl/x"
    cp "$work"/dl/x/boot/vmlinuz-* "$kernel.tmp"
    mv "$kernel.tmp" "$kernel"
    rm -rf "$work/dl"
fi

# --- Initramfs and boot CD ---------------------------------------------------------------
rm -rf "$work/root" "$work/iso"
mkdir -p "$work/root" "$work/iso/isolinux"
gcc -static -O2 -Wall -o "$work/root/init" scripts/emulated-init.c
strip -o "$work/root/bertling-tests" "$exe"
printf '%s\n' "${filters[@]}" --test-threads=1 --color=never --nocapture >"$work/root/args"
(cd "$work/root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >"$work/iso/initrd"
cp "$kernel" "$work/iso/vmlinuz"
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$work/iso/isolinux/"
# Kernel arguments. clearcpuid works around two gaps in Bochs 2.7's Tiger Lake: (1) its CPUID
# leaf 0xD lists PKRU (XSAVE component 9) without a size or offset and gives the standard size
# as the compacted one, so the kernel's XSAVE checks fail and it turns XSAVE off, and with it
# AVX and AVX-512; without PKU and the compacted format (XSAVES, XSAVEC) they pass. (2) It has
# FSRM but no fast-strings bit in IA32_MISC_ENABLE, so the kernel drops ERMS and keeps FSRM,
# and 6.1's memmove then skips its short-length check without using `rep movsb`: a copy
# shorter than 32 bytes runs on through memory (the boot dies in its first printk with a
# log-level prefix). Without FSRM memmove keeps the check.
cat >"$work/iso/isolinux/isolinux.cfg" <<EOF
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /vmlinuz
  APPEND initrd=/initrd console=ttyS0,115200 quiet panic=0 nokaslr mitigations=off clearcpuid=pku,ospke,xsaves,xsavec,fsrm ${BERTLING_EMULATED_APPEND:-}
EOF
xorriso -as mkisofs -quiet -o "$work/boot.iso" -b isolinux/isolinux.bin -c isolinux/boot.cat \
    -no-emul-boot -boot-load-size 4 -boot-info-table "$work/iso" 2>/dev/null

# --- Bochs ---------------------------------------------------------------------------------
# ips only sets how fast emulated time runs against instructions (clock: sync=none): with 10M,
# 100M, 400M and 1G a warm run took 81 to 92 s, the boot slower above 400M (more busy-waiting).
cat >"$work/bochsrc" <<EOF
# This Debian build has no 'nogui' display: rfb (VNC) with no wait for a client.
display_library: rfb, options="timeout=0"
megs: 2048
cpu: model=$cpu_model, count=1, ips=$ips, reset_on_triple_fault=0
clock: sync=none, time0=local
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
ata0-master: type=cdrom, path=$work/boot.iso, status=inserted
boot: cdrom
com1: enabled=1, mode=file, dev=$work/serial.txt
speaker: enabled=0
sound: driver=dummy
log: $work/bochs.log
panic: action=fatal
error: action=report
info: action=report
debug: action=ignore
EOF
# The Debian build has Bochs's debugger: it starts stopped, so tell it to continue (and to quit
# when the machine powers off).
printf 'continue\nquit\n' >"$work/bochs-commands"
rm -f "$work/serial.txt" "$work/bochs.log"
netns=()
# rfb listens on all addresses: keep it in a network namespace of its own where possible.
unshare --net true 2>/dev/null && netns=(unshare --net)
say "booting Debian's $kernel_pkg in Bochs ($cpu_model, ips=$ips), timeout ${timeout_s}s"
boot_start=$(date +%s)
"${netns[@]}" bochs -f "$work/bochsrc" -rc "$work/bochs-commands" </dev/null >"$work/bochs.out" 2>&1 &
bochs_pid=$!
stop_bochs() { kill "$bochs_pid" 2>/dev/null || true; }
trap stop_bochs EXIT

serial() { [[ ! -f "$work/serial.txt" ]] || tr -d '\r' <"$work/serial.txt"; }
init_at="" exit_at="" outcome=""
while :; do
    sleep 1
    now=$(date +%s)
    out=$(serial)
    [[ -z "$init_at" ]] && grep -q '^BERTLING-EMULATED-INIT' <<<"$out" && init_at=$now
    if grep -q '^BERTLING-EMULATED-EXIT ' <<<"$out"; then
        exit_at=$now outcome=exit
        break
    fi
    if grep -q 'Kernel panic' <<<"$out"; then
        outcome=panic
        break
    fi
    if ! kill -0 "$bochs_pid" 2>/dev/null; then
        outcome=bochs-exited
        break
    fi
    if ((now - boot_start > timeout_s)); then
        outcome=timeout
        break
    fi
done
# The guest powers off after the last line; give Bochs a moment to exit by itself.
for _ in 1 2 3 4 5; do kill -0 "$bochs_pid" 2>/dev/null || break; sleep 1; done
stop_bochs
wait "$bochs_pid" 2>/dev/null || true
trap - EXIT
out=$(serial)

if [[ "$outcome" != exit ]]; then
    say "serial console (last 60 lines):"
    tail -n 60 <<<"$out" >&2
    say "bochs (last 20 lines of $work/bochs.out):"
    tail -n 20 "$work/bochs.out" >&2
    case $outcome in
    panic) fail "the guest kernel panicked" ;;
    bochs-exited) fail "Bochs exited before the tests finished" ;;
    *) fail "no result after ${timeout_s}s (BERTLING_EMULATED_TIMEOUT)" ;;
    esac
fi

flags=$(grep -m1 '^BERTLING-EMULATED-FLAGS ' <<<"$out" | sed 's/^[^:]*: //' || true)
model=$(grep -m1 '^BERTLING-EMULATED-MODEL ' <<<"$out" | sed 's/^[^:]*: //' || true)
code=$(grep -m1 '^BERTLING-EMULATED-EXIT ' <<<"$out" | awk '{print $2}')
# Printed by int8::a8::tests::vnni_cpus_use_the_vnni_kernel (when the filters select it).
picked=$(grep -m1 -o 'a8 kernel_name(): [a-z0-9_]*' <<<"$out" | sed 's/.*: //' || true)
echo "guest CPU: $model"
echo "guest CPU flags: $flags"
echo "guest AVX-512 flags: $(tr ' ' '\n' <<<"$flags" | grep -E '^avx512' | tr '\n' ' ')"
[[ -z "$picked" ]] || echo "int8::a8::kernel_name() in the guest: $picked"
echo "--- test output (in Bochs) ---"
sed -n '/^BERTLING-EMULATED-TESTS-BEGIN$/,/^BERTLING-EMULATED-EXIT /p' <<<"$out" | sed '1d;$d'
echo "---"
finished=$(date +%s)
echo "times: build $((built - started))s, boot $((init_at - boot_start))s, tests $((exit_at - init_at))s, total $((finished - started))s"

# /proc/cpuinfo's names: avx512_vnni is Rust's avx512vnni.
for flag in avx512f avx512bw avx512vl avx512_vnni; do
    tr ' ' '\n' <<<"$flags" | grep -qx "$flag" || fail "the guest CPU does not report $flag"
done
[[ "$code" == 0 ]] || fail "the tests exited with status $code under Bochs"
grep -q '^test result: ok\.' <<<"$out" || fail "no 'test result: ok.' line"
grep -Eq '^test result: ok\. [1-9][0-9]* passed' <<<"$out" || fail "no test matched ${filters[*]}"
[[ -z "$picked" || "$picked" == bertling_a8_avx512vnni ]] || fail "a8 picked $picked, not the VNNI kernel"
say "ok: the tests passed on an emulated $cpu_model with avx512vnni"
