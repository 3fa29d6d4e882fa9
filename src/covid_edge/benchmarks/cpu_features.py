"""Which CPU features decide how fast the int8 and float models run, read from /proc/cpuinfo.

"AMD EPYC" says nothing about speed: the same LiteRT build runs the int8 model about 2x
faster than float32 on an x86 core with VNNI (int8 dot-product instructions) and no faster
than float32 on one with only AVX2, because XNNPACK then multiplies int8 values with 16-bit
instructions. On Arm the same split is NEON dot product (asimddp: Cortex-A76, Raspberry Pi 5)
against plain NEON (Cortex-A72, Raspberry Pi 4).

The kernel path is inferred from the flags, the way XNNPACK picks its micro-kernels at run
time; it is a reading of the flags, not a report from the runtime (LiteRT does not expose it).
"""

from __future__ import annotations

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

# x86 flags that change which kernels run (names as the Linux kernel prints them).
X86_FLAGS = ("sse4_1", "avx", "fma", "avx2", "f16c", "avx512f", "avx512bw", "avx512vl",
             "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8",
             "amx_bf16")
# arm64 'Features': asimd = NEON, asimddp = int8 dot product (SDOT/UDOT), i8mm = int8 matrix
# multiply (SMMLA), fphp/asimdhp = float16 arithmetic, sve/sve2.
ARM_FLAGS = ("asimd", "asimddp", "i8mm", "asimdhp", "fphp", "bf16", "sve", "sve2")

# 'CPU part' of Arm Ltd cores (implementer 0x41) that boards running covid-edge carry.
ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd49": "Neoverse-N2",
    "0xd4f": "Neoverse-V2",
}


def _fields(text: str) -> dict[str, str]:
    """The first value of each 'key : value' line (the first core speaks for all)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def int8_kernels(isa: str, flags: set[str]) -> tuple[str, bool]:
    """(XNNPACK's int8 GEMM path for these flags, whether int8 has a fast path there).

    A fast path is one whose int8 multiply-accumulate does several times the work of a float32
    one per instruction: VNNI / AMX on x86, the dot-product or i8mm instructions on Arm.
    Plain NEON (Cortex-A72, Raspberry Pi 4) is undecided (None): its int8 kernels multiply in
    16-bit lanes, as many per instruction as float32's FMA, but move a quarter of the data;
    only a measurement tells.
    """
    if isa == "x86":
        if {"amx_int8", "amx_tile"} <= flags:
            return "AMX (int8 tiles) / AVX-512 VNNI", True
        if "avx512_vnni" in flags and {"avx512bw", "avx512vl"} <= flags:
            return "AVX-512 VNNI", True
        if "avx_vnni" in flags:
            return "AVX-VNNI (256-bit)", True
        if "avx512bw" in flags:
            return "AVX-512BW, no VNNI (int8 multiplied in 16-bit lanes)", False
        if "avx2" in flags:
            return "AVX2, no VNNI (int8 multiplied in 16-bit lanes)", False
        return "SSE, no VNNI", False
    if isa == "arm64":
        if "i8mm" in flags:
            return "NEON i8mm (SMMLA)", True
        if "asimddp" in flags:
            return "NEON dot product (SDOT)", True
        return "NEON without dot product (int8 multiply-long)", None
    return "unknown", False


def float_kernels(isa: str, flags: set[str]) -> str:
    if isa == "x86":
        if "avx512f" in flags:
            return "AVX-512F"
        if {"avx2", "fma"} <= flags:
            return "AVX2 + FMA3"
        return "SSE/AVX"
    if isa == "arm64":
        return "NEON FMA"
    return "unknown"


def _isa(machine: str) -> str:
    machine = machine.lower()
    if machine in ("x86_64", "amd64", "i686", "i386"):
        return "x86"
    if machine in ("aarch64", "arm64"):
        return "arm64"
    return machine or "unknown"


def cpu_features(cpuinfo: Path = CPUINFO, machine: str | None = None) -> dict:
    """Vendor, family/model (x86) or implementer/part (Arm), the flags that matter and the
    kernel paths they imply. Fields the platform does not give are None."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    fields = _fields(text)
    machine = machine or platform.machine()
    isa = _isa(machine)
    if isa == "unknown" or (isa not in ("x86", "arm64") and "flags" in fields):
        isa = "x86" if "flags" in fields else "arm64" if "features" in fields else isa
    all_flags = set((fields.get("flags") or fields.get("features") or "").split())
    wanted = X86_FLAGS if isa == "x86" else ARM_FLAGS
    flags = [flag for flag in wanted if flag in all_flags]
    description: dict = {"isa": isa, "flags": flags, "flags_known": bool(all_flags)}
    if isa == "x86":
        description.update({
            "vendor": fields.get("vendor_id"),
            "family": _int(fields.get("cpu family")),
            "model": _int(fields.get("model")),
            "stepping": _int(fields.get("stepping")),
            # Under a hypervisor the model name may be generic ("AMD EPYC") and some flags
            # hidden: the kernels can only use what the guest sees.
            "hypervisor": "hypervisor" in all_flags,
        })
    elif isa == "arm64":
        part = fields.get("cpu part")
        description.update({
            "vendor": {"0x41": "Arm", "0x51": "Qualcomm", "0x61": "Apple"}.get(
                fields.get("cpu implementer", ""), fields.get("cpu implementer")),
            "core": ARM_PARTS.get((part or "").lower(), part),
        })
    kernels, fast = int8_kernels(isa, all_flags) if all_flags else ("unknown", None)
    description["int8_kernels"] = kernels
    description["int8_fast_path"] = fast
    description["float_kernels"] = float_kernels(isa, all_flags) if all_flags else "unknown"
    return description


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def summary(features: dict) -> str:
    """One line for a table header: 'x86 AMD family 25 model 1 (KVM guest); AVX2, FMA; no
    VNNI: int8 kernels AVX2, no VNNI (...)'."""
    if not features:
        return "CPU features unknown"
    parts = [features.get("isa", "?")]
    if features.get("vendor"):
        parts.append(str(features["vendor"]))
    if features.get("family") is not None:
        parts.append(f"family {features['family']} model {features.get('model')}")
    if features.get("core"):
        parts.append(str(features["core"]))
    if features.get("hypervisor"):
        parts.append("(virtual machine)")
    head = " ".join(parts)
    if not features.get("flags_known"):
        return f"{head}; CPU flags unknown"
    flags = ", ".join(features["flags"]) or "none of interest"
    verdict = {True: "int8 has a fast path", False: "int8 has NO fast path here",
               None: "int8 speed against float32 undecided: measure"}[
        features.get("int8_fast_path")]
    return (f"{head}; flags: {flags}; int8 kernels: {features['int8_kernels']} "
            f"({verdict}); float kernels: {features['float_kernels']}")


def variant_pick(features: dict) -> str:
    """Which model variant to run on this CPU, from its int8 path (README: "Which model on
    which host"); a measurement (`covid-edge bench latency`) settles it."""
    fast = features.get("int8_fast_path")
    if fast:
        return ("int8 (the default): this CPU multiplies int8 with dot-product instructions, "
                "so the int8 model is the fastest variant")
    if fast is False:
        return ("int8 or float16, about as fast: without VNNI int8 is multiplied in 16-bit "
                "lanes, as fast as float32; int8 keeps the smallest file and the Edge TPU "
                "path, float16 (`--model models/covid-edge-float16.tflite`) is no slower")
    return ("measure: int8 kernels here have no dot product (or the CPU flags are unknown), "
            "so which variant is faster depends on the core")
