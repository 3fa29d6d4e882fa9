"""The CPU description tells a host with a fast int8 path from one without.

/proc/cpuinfo excerpts written like the kernel prints them on each kind of host.
"""

from __future__ import annotations

from pathlib import Path

from covid_edge.benchmarks.cpu_features import cpu_features, summary, variant_pick

EPYC_KVM = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse4_1 sse4_2 avx f16c fma avx2 hypervisor
"""
XEON_VNNI = """vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 106
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: sse4_1 avx fma avx2 avx512f avx512bw avx512vl avx512_vnni
"""
SAPPHIRE_RAPIDS = XEON_VNNI.replace("avx512_vnni", "avx512_vnni amx_tile amx_int8 amx_bf16")
ALDER_LAKE = """vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 151
flags\t\t: sse4_1 avx fma avx2 avx_vnni
"""
PI4 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU part\t: 0xd08

Hardware\t: BCM2835
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""
PI5 = """processor\t: 0
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0b
"""


def features(tmp_path: Path, text: str, machine: str) -> dict:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return cpu_features(path, machine)


def test_x86_without_vnni_has_no_int8_fast_path(tmp_path):
    described = features(tmp_path, EPYC_KVM, "x86_64")
    assert described["vendor"] == "AuthenticAMD"
    assert (described["family"], described["model"]) == (25, 1)
    assert described["hypervisor"] is True
    assert "avx2" in described["flags"] and "avx512_vnni" not in described["flags"]
    assert described["int8_fast_path"] is False
    assert "no VNNI" in described["int8_kernels"]
    assert described["float_kernels"] == "AVX2 + FMA3"
    line = summary(described)
    assert "family 25 model 1" in line and "NO fast path" in line


def test_x86_with_vnni_or_amx(tmp_path):
    xeon = features(tmp_path, XEON_VNNI, "x86_64")
    assert xeon["int8_fast_path"] is True and xeon["int8_kernels"] == "AVX-512 VNNI"
    assert xeon["float_kernels"] == "AVX-512F"
    assert "AMX" in features(tmp_path, SAPPHIRE_RAPIDS, "x86_64")["int8_kernels"]
    client = features(tmp_path, ALDER_LAKE, "x86_64")
    assert client["int8_fast_path"] is True and "AVX-VNNI" in client["int8_kernels"]


def test_arm_dot_product_and_plain_neon(tmp_path):
    pi5 = features(tmp_path, PI5, "aarch64")
    assert pi5["core"] == "Cortex-A76" and "asimddp" in pi5["flags"]
    assert pi5["int8_fast_path"] is True and "dot product" in pi5["int8_kernels"]
    pi4 = features(tmp_path, PI4, "aarch64")
    assert pi4["core"] == "Cortex-A72" and pi4["vendor"] == "Arm"
    assert "asimddp" not in pi4["flags"]
    assert pi4["int8_fast_path"] is None  # undecided: only a measurement tells


def test_missing_cpuinfo_is_unknown_not_an_error(tmp_path):
    described = cpu_features(tmp_path / "nothing", "x86_64")
    assert described["flags_known"] is False and described["int8_fast_path"] is None
    assert "unknown" in summary(described)


def test_this_host_is_described():
    described = cpu_features()
    assert described["isa"] and isinstance(described["flags"], list)
    assert summary(described)


def test_the_variant_pick_follows_the_int8_path(tmp_path):
    assert variant_pick(features(tmp_path, XEON_VNNI, "x86_64")).startswith("int8 (the default)")
    assert variant_pick(features(tmp_path, PI5, "aarch64")).startswith("int8 (the default)")
    assert "float16" in variant_pick(features(tmp_path, EPYC_KVM, "x86_64"))
    assert variant_pick(features(tmp_path, PI4, "aarch64")).startswith("measure")
    assert variant_pick(cpu_features(tmp_path / "nothing", "x86_64")).startswith("measure")
