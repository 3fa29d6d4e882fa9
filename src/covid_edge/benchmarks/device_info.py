"""What the benchmark ran on, so that a latency figure can be read and compared later.

Every probe is optional: a field the platform does not offer is None, never an error.
The paths are parameters so that tests can point them at files written like a Pi's.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
BOARD_MODEL = Path("/proc/device-tree/model")
THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
CPUFREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq")

# Distributions whose versions change latency figures.
REPORTED_DISTRIBUTIONS = (
    "ai-edge-litert", "tflite-runtime", "tensorflow", "tensorflow-cpu", "numpy", "pillow",
)

# `vcgencmd get_throttled` bits (Raspberry Pi firmware documentation).
THROTTLE_BITS = {
    0: "under-voltage now",
    1: "ARM frequency capped now",
    2: "throttled now",
    3: "soft temperature limit now",
    16: "under-voltage has occurred",
    17: "ARM frequency capping has occurred",
    18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}
# A Pi starts to throttle at 80 degrees C (85 hard limit).
HOT_CELSIUS = 80.0


def cpu_model(cpuinfo: Path = CPUINFO) -> str | None:
    """The processor's name: 'model name' on x86, the board's 'Model' or 'Hardware' on ARM."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip().lower(), value.strip())
    for key in ("model name", "cpu model", "hardware", "model", "processor"):
        value = fields.get(key)
        # On ARM, 'processor' is just the core index.
        if value and not value.isdigit():
            return value
    return platform.processor() or platform.machine() or None


def board_model(path: Path = BOARD_MODEL) -> str | None:
    """'Raspberry Pi 4 Model B Rev 1.4' on a Pi; None elsewhere."""
    try:
        return path.read_bytes().rstrip(b"\x00").decode("utf-8", errors="replace").strip() or None
    except OSError:
        return None


def cpu_temperature(path: Path = THERMAL_ZONE) -> float | None:
    """Degrees Celsius of the first thermal zone (the SoC on a Pi)."""
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def cpu_frequency(directory: Path = CPUFREQ) -> dict | None:
    """Governor and clock of cpu0: a 'powersave' governor quietly halves a Pi's speed."""
    def read(name):
        try:
            return (directory / name).read_text().strip()
        except OSError:
            return None

    governor = read("scaling_governor")
    current = read("scaling_cur_freq")
    maximum = read("cpuinfo_max_freq")
    if governor is None and current is None:
        return None
    to_mhz = lambda khz: int(khz) // 1000 if khz and khz.isdigit() else None  # noqa: E731
    return {"governor": governor, "current_mhz": to_mhz(current), "max_mhz": to_mhz(maximum)}


def decode_throttled(value: int) -> list[str]:
    """The conditions set in a `vcgencmd get_throttled` word."""
    return [meaning for bit, meaning in THROTTLE_BITS.items() if value & (1 << bit)]


def parse_throttled(output: str) -> int | None:
    """'throttled=0x50005' -> 0x50005."""
    match = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", output)
    return int(match.group(1), 0) if match else None


def throttling(command: str = "vcgencmd") -> dict | None:
    """The Pi firmware's throttling word, decoded; None where there is no vcgencmd."""
    executable = shutil.which(command)
    if executable is None:
        return None
    try:
        done = subprocess.run([executable, "get_throttled"], capture_output=True, text=True,
                              timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    value = parse_throttled(done.stdout)
    if value is None:
        return None
    return {"raw": hex(value), "conditions": decode_throttled(value)}


def host_line() -> str:
    """The CPU model and the instruction-set flags that decide int8 speed and rounding: what
    every measured figure names as its host."""
    from .cpu_features import cpu_features, summary

    return f"{cpu_model() or 'CPU model unknown'}; {summary(cpu_features())}"


def usable_cores() -> int:
    """Cores this process may run on (a container or taskset can allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def package_versions(names=REPORTED_DISTRIBUTIONS) -> dict[str, str]:
    """Installed versions, read from metadata: nothing is imported (TensorFlow stays out)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def thermal_state() -> dict:
    """What can change during a run: sampled before and after it."""
    return {
        "cpu_temperature_c": cpu_temperature(),
        "throttling": throttling(),
        "cpu_frequency": cpu_frequency(),
        "load_average": load_average(),
    }


def describe_device() -> dict:
    """What does not change during a run."""
    from .. import __version__
    from .cpu_features import cpu_features

    return {
        "cpu_model": cpu_model(),
        # Vendor, family/model and the flags (AVX2, AVX-512, VNNI, AMX; NEON dot product,
        # i8mm) that decide whether int8 beats float32 here: the model name alone does not.
        "cpu_features": cpu_features(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "board_model": board_model(),
        "packages": package_versions(),
        "covid_edge": __version__,
    }


def state_warnings(before: dict, after: dict) -> list[str]:
    """Reasons the figures may be slower than the device can do: heat, power, other work."""
    warnings = []
    throttled_after = (after.get("throttling") or {}).get("conditions") or []
    throttled_before = (before.get("throttling") or {}).get("conditions") or []
    new = [condition for condition in throttled_after if condition not in throttled_before]
    now = [condition for condition in throttled_after if condition.endswith(" now")]
    if new or now:
        conditions = ", ".join(dict.fromkeys(new + now))
        warnings.append(
            f"the Pi firmware reports {conditions}: latencies are slower than the board can do. "
            "Use the official power supply and a heatsink or fan, then run again.")
    elif throttled_before:
        warnings.append(
            "the Pi firmware reports throttling since boot "
            f"({', '.join(throttled_before)}), not during this run")
    temperatures = [state.get("cpu_temperature_c") for state in (before, after)]
    if any(t is not None and t >= HOT_CELSIUS for t in temperatures):
        warnings.append(
            f"the CPU reached {max(t for t in temperatures if t is not None)} C "
            f"(a Pi throttles from {HOT_CELSIUS:.0f} C): add cooling and run again")
    governor = (before.get("cpu_frequency") or {}).get("governor")
    if governor == "powersave":
        warnings.append("the CPU frequency governor is 'powersave': latencies are not the "
                        "device's best (try the 'performance' or 'ondemand' governor)")
    load = before.get("load_average")
    cores = usable_cores()
    if load and load[0] >= max(1.0, 0.5 * cores):
        warnings.append(
            f"the machine was busy before the run (load average {load[0]} on {cores} cores): "
            "other programs compete for the CPU and make the figures noisy")
    return warnings
