#!/usr/bin/env bash
# Prove the Raspberry Pi install without a Pi: 64-bit Arm Debian Bookworm (the base of Raspberry
# Pi OS 64-bit) in a debootstrap root filesystem, run by QEMU user-mode emulation on an x86-64
# Debian host. In it, covid-edge is installed with the README's and the kiosk guide's Raspberry
# Pi commands, verbatim, three ways (LiteRT; tflite-runtime instead; numpy<2 beside apt's
# numpy-built modules as picamera2 needs), and each install must pass `covid-edge bench check`,
# classify the bundled samples with the verdicts of x86-64, and run `info` and `explain`.
#
#   sudo scripts/verify_arm64.sh              # about 1 GB under build/arm64/; reuses the rootfs
#   sudo scripts/verify_arm64.sh --fresh      # rebuild the rootfs from scratch
#   sudo scripts/verify_arm64.sh --rootfs-only  # only build (or reuse) the rootfs, then stop
#   QEMU_CPU=cortex-a72 sudo scripts/verify_arm64.sh  # emulate a Raspberry Pi 4's CPU
#   scripts/verify_arm64.sh --check-docs      # only: are the commands below still in the docs?
#
# Needs root (apt, debootstrap, chroot, binfmt_misc) and the network (deb.debian.org, PyPI).
# Writes docs/arm64/result.json and docs/arm64/README.md (scripts/arm64_report.py) and prints
# their summary. Exit 0: every configuration passed; 1: one failed; 2: cannot run here.
#
# Why binfmt_misc: QEMU user mode runs one Arm process, but every process it starts (dpkg's
# maintainer scripts, `python3 -m venv` running ensurepip, pip running the build backend) is
# started by the kernel, which needs a binfmt_misc entry to hand Arm binaries to QEMU. Debian's
# qemu-user-static ships that entry; the script registers it (flag F: the emulator is opened
# on the host, nothing is copied into the rootfs) when the host has not, and removes it again.
#
# Which Arm CPU is emulated decides which int8 kernels XNNPACK takes: QEMU's default ("max")
# has the dot-product and i8mm instructions of a Raspberry Pi 5 and more; QEMU_CPU=cortex-a72
# emulates a Raspberry Pi 4's core (NEON, no dot product). With QEMU_CPU set, the results go to
# build/arm64/out-$QEMU_CPU and docs/arm64/$QEMU_CPU/. The CPU features the emulated programs
# see (getauxval HWCAP) are recorded either way.
#
# Timings under emulation are not Raspberry Pi timings: the script reports none.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
BUILD=$REPO/build/arm64
ROOTFS=$BUILD/rootfs
QEMU_CPU=${QEMU_CPU:-}
case "$QEMU_CPU" in *[!a-z0-9-]*) echo "error: QEMU_CPU=$QEMU_CPU is not a CPU name" >&2; exit 2 ;; esac
OUT=$BUILD/out${QEMU_CPU:+-$QEMU_CPU}
DOCS=docs/arm64${QEMU_CPU:+/$QEMU_CPU}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# In the rootfs: Python 3.11 and venv as on Raspberry Pi OS; apt's numpy 1.24 and PyWavelets, a
# C extension built against it, stand in for apt's picamera2/simplejpeg (not in Debian).
ROOTFS_PACKAGES=python3,python3-venv,ca-certificates,python3-numpy,python3-pywt
ROOTFS_STAMP=$ROOTFS/.covid-edge-rootfs  # written last: a rootfs without it is incomplete
# The clone the docs tell Pi owners to make (`git clone ... ~/covid-edge`), as root in the chroot.
CLONE=/root/covid-edge
VENV=/root/.venvs/covid-edge
SAMPLE=models/samples/covid-COVID-390.jpg

# The install commands, copied from the docs. --check-docs (and every run) fails when a line is
# no longer in the file it came from: then update the docs or this list, never run stale ones.
README_LITERT=(
    'python3 -m venv ~/.venvs/covid-edge && . ~/.venvs/covid-edge/bin/activate'
    'pip install ~/covid-edge             # runtime only: numpy, pillow, click, ai-edge-litert'
)
README_TFLITE=(
    'python3 -m venv ~/.venvs/covid-edge && . ~/.venvs/covid-edge/bin/activate'
    'pip install ~/covid-edge "numpy<2" tflite-runtime && pip uninstall -y ai-edge-litert'
)
KIOSK_NUMPY1=(
    'python3 -m venv --system-site-packages ~/.venvs/covid-edge'
    '~/.venvs/covid-edge/bin/pip install "$HOME/covid-edge[serve]" "numpy<2"'
)

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$1" >&2; exit "${2:-2}"; }

check_docs() {
    local missing=0 line
    for line in "${README_LITERT[@]}" "${README_TFLITE[@]}"; do
        grep -qxF -- "$line" README.md || { echo "not in README.md: $line" >&2; missing=1; }
    done
    for line in "${KIOSK_NUMPY1[@]}"; do
        # indented inside a numbered list there
        grep -qE "^ *$(printf '%s' "$line" | sed 's/[][\.*^$/]/\\&/g')\$" docs/kiosk.md \
            || { echo "not in docs/kiosk.md: $line" >&2; missing=1; }
    done
    return $missing
}

FRESH=0
ROOTFS_ONLY=0
case "${1:-}" in
    --rootfs-only) ROOTFS_ONLY=1 ;;
    --check-docs) check_docs && echo "docs: all install commands found"; exit $? ;;
    --fresh) FRESH=1 ;;
    "") ;;
    -h|--help) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
esac

check_docs || die "the docs changed: update the command lists in $0"
[ "$(uname -m)" = x86_64 ] || die "run this on an x86-64 host (this is $(uname -m))"
[ "$(id -u)" = 0 ] || die "needs root (apt, debootstrap, chroot, binfmt_misc): sudo $0"
command -v apt-get >/dev/null || die "needs a Debian/Ubuntu host with apt-get"
START=$(date +%s)

# --- host tools -------------------------------------------------------------------------------
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
[ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

BINFMT=/proc/sys/fs/binfmt_misc
REGISTERED=0
MOUNTED_BINFMT=0
if [ ! -e $BINFMT/register ]; then
    mount -t binfmt_misc binfmt_misc $BINFMT || die "cannot mount binfmt_misc (a container without it?)"
    MOUNTED_BINFMT=1
fi
if [ ! -e $BINFMT/qemu-aarch64 ]; then
    conf=/usr/lib/binfmt.d/qemu-aarch64.conf
    [ -f $conf ] || die "$conf missing: is qemu-user-static installed?"
    cat $conf > $BINFMT/register
    REGISTERED=1
fi

MOUNTS=()
cleanup() {
    local m
    for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" || true; done
    if [ $REGISTERED = 1 ]; then echo -1 > $BINFMT/qemu-aarch64 || true; fi
    if [ $MOUNTED_BINFMT = 1 ]; then umount $BINFMT || true; fi
}
trap cleanup EXIT

mounted_under() { findmnt -rn -o TARGET | grep -q "^$ROOTFS\(/\|$\)"; }

# --- the arm64 root filesystem (cached) -------------------------------------------------------
if [ $FRESH = 1 ] || [ ! -f "$ROOTFS_STAMP" ]; then
    # Never delete a rootfs with something mounted in it (a bind-mounted /dev would go too).
    mounted_under && die "something is still mounted under $ROOTFS; unmount it first"
    rm -rf "$ROOTFS"
    mkdir -p "$ROOTFS"
    say "debootstrap $SUITE arm64 into $ROOTFS (several minutes under emulation)"
    debootstrap --arch=arm64 --variant=minbase --include=$ROOTFS_PACKAGES \
        $SUITE "$ROOTFS" "$MIRROR" > "$BUILD/debootstrap.log" 2>&1 \
        || die "debootstrap failed; see $BUILD/debootstrap.log"
    date -u +%FT%TZ > "$ROOTFS_STAMP"
fi
if [ $ROOTFS_ONLY = 1 ]; then say "rootfs ready in $ROOTFS"; exit 0; fi
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
mount -t proc proc "$ROOTFS/proc"; MOUNTS+=("$ROOTFS/proc")
# No /sys: with the host's sysfs mounted, LiteRT's cpuinfo (XNNPACK) sees x86 processor lists
# beside QEMU's Arm CPU and crashes (SIGSEGV) under emulation; without it, it prints "Error in
# cpuinfo" and carries on. A Pi has a /sys that matches its CPU.
# debootstrap made /dev/null, /dev/urandom and friends as nodes: no bind mount of the host /dev.
for node in null zero random urandom; do
    [ -c "$ROOTFS/dev/$node" ] || die "$ROOTFS/dev/$node missing; rebuild with --fresh"
done

# The host's CA bundle goes along: a host behind a TLS-inspecting proxy trusts the proxy's CA
# there, and pip in the rootfs must reach PyPI through the same proxy.
HOST_CA=/etc/ssl/certs/ca-certificates.crt
[ -f $HOST_CA ] || HOST_CA=$ROOTFS/etc/ssl/certs/ca-certificates.crt
cp "$HOST_CA" "$ROOTFS/etc/ssl/certs/host-ca-certificates.crt"
in_arm() {  # run a bash script as root in the emulated Bookworm, with a clean environment
    # QEMU reads QEMU_CPU from each emulated process's environment: it must survive env -i.
    chroot "$ROOTFS" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb ${QEMU_CPU:+QEMU_CPU=$QEMU_CPU} \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off \
        PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt \
        SSL_CERT_FILE=/etc/ssl/certs/host-ca-certificates.crt \
        /bin/bash -o pipefail -c "$1"
}

rm -rf "$OUT"
mkdir -p "$OUT/host" "$OUT/platform"
in_arm 'uname -m; cat /etc/debian_version; python3 --version' > "$OUT/platform/arm.txt"
# The CPU as the emulated programs see it: what XNNPACK's CPU detection reads (AT_HWCAP/2).
in_arm "python3 -c 'import ctypes, json; get = ctypes.CDLL(None).getauxval; get.restype = ctypes.c_ulong; h, h2 = get(16), get(26); print(json.dumps({\"qemu_cpu\": \"${QEMU_CPU:-max (QEMU default)}\", \"hwcap\": hex(h), \"hwcap2\": hex(h2), \"asimd\": bool(h >> 1 & 1), \"dotprod\": bool(h >> 20 & 1), \"sve\": bool(h >> 22 & 1), \"i8mm\": bool(h2 >> 13 & 1), \"bf16\": bool(h2 >> 14 & 1)}))'" \
    > "$OUT/platform/cpu.json"
/usr/bin/qemu-aarch64-static --version | head -1 > "$OUT/platform/qemu.txt"
say "emulated: $(tr '\n' ' ' < "$OUT/platform/arm.txt")($(cat "$OUT/platform/qemu.txt")); CPU $(cat "$OUT/platform/cpu.json")"

# --- x86-64 baseline: a wheel built from the repo, installed in a host venv -------------------
say "x86-64 baseline: building the wheel and classifying the samples on the host"
HOSTPY=$BUILD/host-venv
[ -x $HOSTPY/bin/python ] || python3 -m venv $HOSTPY
$HOSTPY/bin/pip install -q --disable-pip-version-check build
rm -rf "$BUILD/dist"
$HOSTPY/bin/python -m build --wheel --outdir "$BUILD/dist" . > "$OUT/host/build.log" 2>&1 \
    || die "building the wheel failed; see $OUT/host/build.log"
WHEEL=$(ls "$BUILD"/dist/covid_edge-*.whl)
rm -rf "$BUILD/host-run"
python3 -m venv "$BUILD/host-run"
"$BUILD/host-run/bin/pip" install -q --disable-pip-version-check "$WHEEL" > "$OUT/host/install.log" 2>&1 \
    || die "installing the wheel on the host failed; see $OUT/host/install.log"
basename "$WHEEL" > "$OUT/host/wheel.txt"
"$BUILD/host-run/bin/covid-edge" classify models/samples/ --json > "$OUT/host/classify.json"
"$BUILD/host-run/bin/covid-edge" bench check --json > "$OUT/host/check.json" || true
# The same samples under each of the runtime's kernel sets: their spread is rounding.
"$BUILD/host-run/bin/python" scripts/int8_kernels.py > "$OUT/host/kernels.json"

# --- the clone, as `git clone` would make it: tracked and new files, nothing git ignores ------
rm -rf "$ROOTFS$CLONE"
mkdir -p "$ROOTFS$CLONE"
git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf - | tar -xf - -C "$ROOTFS$CLONE"

# --- each configuration: the doc's commands verbatim in a new venv, then the checks -----------
run_config() {  # name, doc, commands...
    local name=$1 doc=$2; shift 2
    local dir=$OUT/$name cmds=""
    mkdir -p "$dir"
    printf '%s\n' "$@" > "$dir/commands.txt"
    echo "$doc" > "$dir/doc.txt"
    for line in "$@"; do cmds+="$line"$'\n'; done
    say "$name: installing with the commands of $doc"
    local t0; t0=$(date +%s)
    local rc=0
    in_arm "rm -rf $VENV; cd ~ && set -e
$cmds" > "$dir/install.log" 2>&1 || rc=$?
    echo $rc > "$dir/install.rc"
    echo $(( $(date +%s) - t0 )) > "$dir/install.seconds"
    if [ "$(cat "$dir/install.rc")" != 0 ]; then
        say "$name: install FAILED (see $dir/install.log)"; return 0
    fi
    say "$name: bench check, classify, info, explain"
    local ce="$VENV/bin/covid-edge"
    # Each command's exit status is kept (step NAME COMMAND): the report judges them.
    step() { local rc=0; in_arm "cd $CLONE && $2" > "$dir/$1.json" 2> "$dir/$1.err" || rc=$?; echo $rc > "$dir/$1.rc"; }
    step check "$ce bench check --json"
    step classify "$ce classify models/samples/ --json"
    step info "$ce info --json"
    # A coarse grid (17 inferences, not the default 170): it proves explain runs; a full map
    # takes about 10 minutes under emulation.
    step explain "rm -f /tmp/explain.png && $ce explain $SAMPLE -o /tmp/explain.png --patch 56 --stride 56 --json"
    cp "$ROOTFS/tmp/explain.png" "$dir/explain.png" 2>/dev/null || true
    in_arm "$VENV/bin/python -m pip list --format=json" > "$dir/packages.json" 2>/dev/null || true
    if [ "$name" = tflite-runtime ]; then
        # The README's reason for "numpy<2": with numpy 2, tflite-runtime 2.14 cannot load a
        # model, and covid-edge must say so in one line with exit 3.
        in_arm "$VENV/bin/pip install -q 'numpy>=2' && cd $CLONE && $ce classify $SAMPLE; echo \"exit \$?\"" \
            > "$dir/numpy2.txt" 2>&1 || true
    fi
    if [ "$name" = numpy1-kiosk ]; then
        # What the numpy<2 pin is for: an apt-built numpy extension imported from the venv.
        in_arm "$VENV/bin/python -c 'import numpy, pywt; print(numpy.__version__, numpy.__file__); print(pywt.__version__, pywt.__file__); pywt.dwt([1.0, 2.0, 3.0, 4.0], \"haar\")'" \
            > "$dir/apt_numpy_module.txt" 2>&1 && echo 0 > "$dir/apt_numpy_module.rc" \
            || echo 1 > "$dir/apt_numpy_module.rc"
    fi
}

run_config litert README.md "${README_LITERT[@]}"
run_config tflite-runtime README.md "${README_TFLITE[@]}"
run_config numpy1-kiosk docs/kiosk.md "${KIOSK_NUMPY1[@]}"

echo $(( $(date +%s) - START )) > "$OUT/total.seconds"
say "comparing with x86-64 and the model card; writing docs/arm64/"
python3 scripts/arm64_report.py "$OUT" --docs "$DOCS"
