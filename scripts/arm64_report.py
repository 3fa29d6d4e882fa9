"""Judge what scripts/verify_arm64.sh collected and write docs/arm64/result.json and its page.

    python3 scripts/arm64_report.py build/arm64/out --docs docs/arm64

Each configuration passes when the doc's install commands succeed, the expected runtime is
the one used, `bench check` passes, `classify` gives the x86-64 verdicts (but for samples
`bench check` reports near a verdict boundary) with raw int8 outputs within the model card's
tolerance, and `info` and `explain` run. It records how far each configuration's outputs are
from each x86-64 kernel set's (the card's raw_by_kernel_set) and which it is closest to. It also asks PyPI
which 32-bit Arm (armv7l) wheels exist for Python 3.11. Standard library only: it runs with the
host's python3, before any venv. Exit 0 when everything passed, 1 otherwise.

Timings under emulation are not Raspberry Pi timings: no latency is copied into the result.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

SCHEMA = "covid-edge/verify-arm64/1"
REPO_ROOT = Path(__file__).resolve().parent.parent
CARD = REPO_ROOT / "models" / "model_card.json"
# configuration name -> the runtime it must end up using
EXPECTED_RUNTIME = {"litert": "ai_edge_litert", "tflite-runtime": "tflite_runtime",
                    "numpy1-kiosk": "ai_edge_litert"}
PACKAGES = ("covid-edge", "numpy", "pillow", "ai-edge-litert", "tflite-runtime")
ARMV7_PACKAGES = ("ai-edge-litert", "tflite-runtime", "numpy", "pillow")
EMULATION_NOTE = ("Emulated with QEMU user mode on an x86-64 host: results, not speed. Timings "
                  "under emulation are not Raspberry Pi timings and none are reported.")
# Top-level keys every result carries; the test holds docs/arm64/result.json to them.
RESULT_KEYS = ("schema", "created", "note", "host", "emulated", "script_seconds", "x86_64",
               "configurations", "armv7l", "passed")
CONFIG_KEYS = ("name", "doc", "commands", "install", "packages", "runtime", "expected_runtime",
               "bench_check", "classify", "info", "explain", "problems", "passed")


def _read(path: Path, default=None):
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return default


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _rc(path: Path) -> int | None:
    text = _read(path)
    return int(text) if text and text.lstrip("-").isdigit() else None


def card_reference() -> tuple[dict, dict, int]:
    """Reference raw int8 output per sample file name, the output quantization, the tolerance.
    For a model with one output per class, the positive class's unit: `classify --json` gives
    P(positive), which is what the device's raw output is recovered from."""
    card = json.loads(CARD.read_text(encoding="utf-8"))
    reference = card["reference_outputs"]
    positive = card["labels"].index(card["positive_label"])
    raw = {Path(image["file"]).name: (image["raw_output"][positive]
                                      if isinstance(image["raw_output"], list)
                                      else image["raw_output"])
           for image in reference["images"]}
    quantization = card["variants"][reference["variant"]]["output_quantization"]
    return raw, quantization, int(reference["tolerance"]["raw_output_steps"])


def raw_int8(probability: float | None, quantization: dict) -> int | None:
    """The model's int8 output back from the dequantized probability classify reports."""
    if probability is None:
        return None
    return round(probability / quantization["scale"]) + int(quantization["zero_point"])


def classify_rows(document: dict | None, quantization: dict) -> dict:
    rows = {}
    for result in (document or {}).get("results", []):
        rows[Path(result["path"]).name] = {
            "verdict": result.get("verdict"),
            "raw": raw_int8(result.get("raw_probability"), quantization),
            "ood_distance": result.get("ood_distance"),
        }
    return rows


def host_description() -> dict:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    os_name = None
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return {"machine": platform.machine(), "cpu": cpu, "os": os_name}


def _lung_summary(lungs: dict | None) -> dict | None:
    if not lungs or not lungs.get("images"):
        return None
    rows = lungs["images"]
    return {"passed": lungs.get("passed"),
            "max_steps": max((row.get("max_steps") or 0) for row in rows),
            "min_mask_agreement": min((row.get("mask_agreement") or 0.0) for row in rows),
            "tolerance": {key: value for key, value in (lungs.get("tolerance") or {}).items()
                          if key != "measured"}}


def judge_config(out: Path, name: str, x86: dict, card_raw: dict, quantization: dict,
                 tolerance: int) -> dict:
    d = out / name
    problems: list[str] = []
    install_rc = _rc(d / "install.rc")
    config = {"name": name, "doc": _read(d / "doc.txt"),
              "commands": (_read(d / "commands.txt") or "").splitlines(),
              "install": {"exit_code": install_rc, "passed": install_rc == 0},
              "packages": {}, "runtime": None, "expected_runtime": EXPECTED_RUNTIME.get(name),
              "bench_check": None, "classify": None, "info": None, "explain": None}
    if install_rc != 0:
        log = (_read(d / "install.log") or "").splitlines()
        problems.append(f"install failed (exit {install_rc}): " + (log[-1] if log else "no log"))
        config.update(problems=problems, passed=False)
        return config

    listed = {p["name"].lower().replace("_", "-"): p["version"]
              for p in (_json(d / "packages.json") or [])}
    config["packages"] = {p: listed.get(p) for p in PACKAGES}

    check = _json(d / "check.json")
    check_rc = _rc(d / "check.rc")
    near = set()
    if check:
        steps = [row["steps"] for row in check["images"] if row["steps"] is not None]
        config["runtime"] = check.get("runtime")
        near = {Path(row["file"]).name for row in check["images"] if row.get("near_boundary")}
        kernels = check.get("kernel_sets") or {}
        config["bench_check"] = {
            "exit_code": check_rc, "passed": bool(check.get("passed")) and check_rc == 0,
            "tolerance_steps": (check.get("tolerance") or {}).get("raw_output_steps"),
            "max_steps": max(steps) if steps else None,
            # vs each x86-64 kernel set's outputs stored in the card (every output unit)
            "max_steps_by_kernel_set": kernels.get("max_steps"),
            "closest_kernel_set": kernels.get("closest"),
            "near_boundary": sorted(near),
            # the lung model's masks, checked by the same command
            "lungs": _lung_summary(check.get("lungs")),
            "images": [{"file": Path(row["file"]).name, "expected_raw": row["expected_raw"],
                        "raw": row["raw"], "steps": row["steps"],
                        "steps_by_kernel_set": row.get("steps_by_kernel_set"),
                        "verdict": row.get("verdict"),
                        "expected_verdict": row.get("expected_verdict"),
                        "near_boundary": row.get("near_boundary"),
                        "passed": row.get("passed")} for row in check["images"]]}
    else:
        config["bench_check"] = {"exit_code": check_rc, "passed": False}
    if not config["bench_check"]["passed"]:
        if check:
            failed = [row for row in check["images"] if not row["passed"]]
            problems.append(f"bench check FAIL (exit {check_rc}): {len(failed)} of "
                            f"{len(check['images'])} samples beyond the tolerance of "
                            f"{config['bench_check']['tolerance_steps']} steps or in verdict, "
                            f"largest {config['bench_check']['max_steps']} steps"
                            + "".join(f"; {problem}" for problem in check.get("problems", [])))
        else:
            err = [line for line in (_read(d / "check.err") or "").splitlines()
                   if line.startswith("error:")]
            problems.append(f"bench check did not run (exit {check_rc})"
                            + (f": {err[-1]}" if err else ""))

    document = _json(d / "classify.json")
    classify_rc = _rc(d / "classify.rc")
    arm = classify_rows(document, quantization)
    images = []
    for file, x in sorted(x86.items()):
        a = arm.get(file, {})
        ood = None
        if a.get("ood_distance") is not None and x.get("ood_distance"):
            ood = abs(a["ood_distance"] - x["ood_distance"]) / x["ood_distance"]
        images.append({
            "file": file, "verdict": a.get("verdict"), "x86_64_verdict": x["verdict"],
            "raw": a.get("raw"), "x86_64_raw": x["raw"], "card_raw": card_raw.get(file),
            "steps_vs_card": (abs(a["raw"] - card_raw[file])
                              if a.get("raw") is not None and file in card_raw else None),
            "steps_vs_x86_64": (abs(a["raw"] - x["raw"])
                                if a.get("raw") is not None and x["raw"] is not None else None),
            "ood_distance_relative_difference": ood})
    same = bool(images) and all(i["verdict"] == i["x86_64_verdict"] for i in images)
    # A sample bench check calls near a verdict boundary may differ between int8 kernels.
    differ_far = [i["file"] for i in images
                  if i["verdict"] != i["x86_64_verdict"] and i["file"] not in near]

    def largest(key):
        values = [i[key] for i in images if i[key] is not None]
        return max(values) if len(values) == len(images) and values else None

    config["classify"] = {
        "exit_code": classify_rc, "verdicts_match_x86_64": same,
        "verdicts_differing_near_boundary": sorted(
            i["file"] for i in images if i["verdict"] != i["x86_64_verdict"]
            and i["file"] in near),
        "max_steps_vs_card": largest("steps_vs_card"),
        "max_steps_vs_x86_64": largest("steps_vs_x86_64"),
        "max_ood_distance_relative_difference": largest("ood_distance_relative_difference"),
        "images": images}
    if classify_rc != 0 or document is None:
        problems.append(f"classify failed (exit {classify_rc})")
    if not images or differ_far:
        problems.append("classify verdicts differ from x86-64"
                        + (f" ({', '.join(differ_far)})" if differ_far else ""))
    steps = config["classify"]["max_steps_vs_card"]
    if steps is None or steps > tolerance:
        problems.append(f"classify raw outputs {steps} steps from the card (tolerance {tolerance})")
    runtime = config["runtime"] or (document or {}).get("runtime")
    config["runtime"] = runtime
    if not runtime or runtime.split()[0] != config["expected_runtime"]:
        problems.append(f"runtime {runtime!r}, expected {config['expected_runtime']}")

    info = _json(d / "info.json")
    config["info"] = {"exit_code": _rc(d / "info.rc"), "passed": _rc(d / "info.rc") == 0
                      and info is not None}
    if not config["info"]["passed"]:
        problems.append(f"info failed (exit {config['info']['exit_code']})")
    explain = _json(d / "explain.json")
    png = d / "explain.png"
    config["explain"] = {"exit_code": _rc(d / "explain.rc"),
                         "passed": _rc(d / "explain.rc") == 0 and png.is_file()
                         and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n",
                         "verdict": (explain or {}).get("verdict")}
    if not config["explain"]["passed"]:
        problems.append(f"explain failed (exit {config['explain']['exit_code']})")

    if (d / "numpy2.txt").exists():
        # The reason for the pin: numpy 2 under tflite-runtime 2.14 must be one clear line.
        lines = (_read(d / "numpy2.txt") or "").splitlines()
        codes = [line.split()[1] for line in lines if line.startswith("exit ")]
        errors = [line for line in lines if line.startswith("error:")]
        config["numpy2_control"] = {
            "exit_code": int(codes[-1]) if codes and codes[-1].isdigit() else None,
            "message": errors[-1] if errors else None}
        config["numpy2_control"]["passed"] = (config["numpy2_control"]["exit_code"] == 3
                                              and "numpy<2" in (errors[-1] if errors else ""))
        if not config["numpy2_control"]["passed"]:
            problems.append("with numpy 2, classify did not fail with the one-line numpy<2 "
                            "message and exit 3")
    if (d / "apt_numpy_module.rc").exists():
        text = _read(d / "apt_numpy_module.txt") or ""
        rc = _rc(d / "apt_numpy_module.rc")
        numpy_version = config["packages"].get("numpy") or ""
        config["apt_numpy_module"] = {
            "module": "pywt (python3-pywt, built against apt's numpy 1.24)",
            "exit_code": rc, "output": text.splitlines()[-3:],
            "venv_numpy": numpy_version,
            "passed": rc == 0 and numpy_version.split(".")[0] == "1"}
        if not config["apt_numpy_module"]["passed"]:
            problems.append("the apt-built numpy module does not import with the venv's numpy "
                            f"{numpy_version}")
    config["problems"] = problems
    config["passed"] = not problems
    return config


def armv7l_wheels(timeout: float = 20.0) -> dict:
    """Which releases on PyPI carry a CPython 3.11 wheel for 32-bit Arm (linux armv7l)."""
    found: dict = {}
    for package in ARMV7_PACKAGES:
        try:
            with urllib.request.urlopen(f"https://pypi.org/pypi/{package}/json",
                                        timeout=timeout) as response:
                releases = json.load(response)["releases"]
        except (OSError, ValueError) as exc:
            found[package] = {"error": f"PyPI not reachable: {exc}"}
            continue
        files = sorted(f["filename"] for files in releases.values() for f in files
                       if "armv7l" in f["filename"] and "-cp311-" in f["filename"])
        found[package] = {"cp311_armv7l_wheels": files}
    return found


def armv7l_statement(wheels: dict) -> str:
    def files(package):
        return wheels.get(package, {}).get("cp311_armv7l_wheels")

    if any(files(p) is None for p in ARMV7_PACKAGES):
        return "PyPI could not be asked; no statement about 32-bit wheels."
    parts = []
    for package in ("ai-edge-litert", "tflite-runtime"):
        names = files(package)
        parts.append(f"{package}: " + (", ".join(names) if names else "none"))
    bare = [p for p in ("numpy", "pillow") if not files(p)]
    text = "Python 3.11 wheels for 32-bit Arm (armv7l) on PyPI: " + "; ".join(parts) + "."
    if bare:
        text += (f" {' and '.join(bare)} publish none (Raspberry Pi OS's piwheels index builds "
                 "them; not reachable from here), so no 32-bit install was tried.")
    return text


def build(out: Path, query_pypi: bool = True) -> dict:
    card_raw, quantization, tolerance = card_reference()
    x86_doc = _json(out / "host" / "classify.json")
    x86 = classify_rows(x86_doc, quantization)
    arm_platform = (_read(out / "platform" / "arm.txt") or "").splitlines()
    configs = [judge_config(out, name, x86, card_raw, quantization, tolerance)
               for name in EXPECTED_RUNTIME if (out / name).is_dir()]
    wheels = armv7l_wheels() if query_pypi else {}
    seconds = _read(out / "total.seconds")
    x86_check = _json(out / "host" / "check.json") or {}
    card_tolerance = json.loads(CARD.read_text(encoding="utf-8"))["reference_outputs"][
        "tolerance"]
    result = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "note": EMULATION_NOTE,
        "host": {**host_description(), "qemu": _read(out / "platform" / "qemu.txt")},
        "emulated": {"machine": arm_platform[0] if arm_platform else None,
                     "debian": arm_platform[1] if len(arm_platform) > 1 else None,
                     "python": arm_platform[2] if len(arm_platform) > 2 else None,
                     # what the emulated programs see: XNNPACK picks its kernels by it
                     "cpu": _json(out / "platform" / "cpu.json")},
        "tolerance": card_tolerance,
        # The host's wall time for the whole script, to plan CI with; not a Pi figure.
        "script_seconds": int(seconds) if seconds and seconds.isdigit() else None,
        "x86_64": {"wheel": _read(out / "host" / "wheel.txt"),
                   "runtime": (x86_doc or {}).get("runtime"),
                   "bench_check_passed": x86_check.get("passed"),
                   # raw int8 outputs of the samples under each kernel set of the x86 runtime
                   "kernels": _json(out / "host" / "kernels.json"),
                   "images": [{"file": f, "verdict": r["verdict"], "raw": r["raw"]}
                              for f, r in sorted(x86.items())]},
        "configurations": configs,
        "armv7l": {"wheels": wheels, "statement": armv7l_statement(wheels)},
    }
    result["passed"] = (bool(configs) and len(configs) == len(EXPECTED_RUNTIME)
                        and all(c["passed"] for c in configs) and bool(x86))
    return result


def validate(result: dict) -> list[str]:
    """What is missing or inconsistent in a result document ([] when none)."""
    errors = [f"missing key {key}" for key in RESULT_KEYS if key not in result]
    if result.get("schema") != SCHEMA:
        errors.append(f"schema {result.get('schema')!r}, expected {SCHEMA}")
    for config in result.get("configurations", []):
        errors += [f"{config.get('name')}: missing key {key}"
                   for key in CONFIG_KEYS if key not in config]
        if config.get("passed") != (not config.get("problems")):
            errors.append(f"{config.get('name')}: passed disagrees with its problems")
    names = [c.get("name") for c in result.get("configurations", [])]
    if result.get("passed") and sorted(names) != sorted(EXPECTED_RUNTIME):
        errors.append(f"passed with configurations {names}, expected {list(EXPECTED_RUNTIME)}")
    if result.get("passed") and not all(c.get("passed") for c in result["configurations"]):
        errors.append("passed although a configuration failed")
    return errors


def _yes(value) -> str:
    return "yes" if value else "**no**"


def markdown(result: dict) -> str:
    host, emulated = result["host"], result["emulated"]
    lines = [
        "# covid-edge on 64-bit Arm (emulated Debian Bookworm)",
        "",
        "Written by `sudo scripts/verify_arm64.sh` (judged by `scripts/arm64_report.py`); "
        "the data is in [result.json](result.json). Do not edit by hand: rerun the script.",
        "",
        f"> {result['note']}",
        "",
        f"- Created {result['created']}; overall: **{'PASS' if result['passed'] else 'FAIL'}**.",
        f"- Emulated: {emulated['machine']}, Debian {emulated['debian']}, {emulated['python']} "
        f"({host['qemu']}).",
        f"- Host: {host['machine']}, {host['cpu']}, {host['os']}.",
        *_cpu_lines(emulated.get("cpu")),
        *_tolerance_lines(result.get("tolerance")),
        f"- x86-64 baseline: {result['x86_64']['wheel']} on {result['x86_64']['runtime']} "
        f"(bench check passed: {result['x86_64']['bench_check_passed']}).",
    ]
    if result["script_seconds"] is not None:
        minutes = result["script_seconds"] / 60
        lines.append(f"- The whole script took {minutes:.1f} min on this host (for planning CI; "
                     "not a Raspberry Pi figure).")
    lines += ["", "| configuration | doc | runtime | numpy | install | bench check | "
              "verdicts = x86-64 | max steps vs card | max steps vs x86-64 | info | explain |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = [c for c in result["configurations"]
            if (c.get("bench_check") or {}).get("max_steps_by_kernel_set")]
    if rows:
        names = list(rows[0]["bench_check"]["max_steps_by_kernel_set"])
        kernel_table = [
            "", "Largest difference (int8 output steps, any output unit, the six samples) "
            "between each configuration and each x86-64 kernel set's outputs stored in the "
            "card, from `bench check --json`:", "",
            "| configuration | " + " | ".join(f"vs x86-64 {n}" for n in names)
            + " | closest | tolerance | near a boundary | lung masks: max steps, agreement "
            "(tolerance) |",
            "|---|" + "---:|" * len(names) + "---|---:|---|---|"]
        for c in rows:
            check = c["bench_check"]
            kernel_table.append(
                f"| {c['name']} | " + " | ".join(str(check["max_steps_by_kernel_set"].get(n))
                                                 for n in names)
                + f" | {check['closest_kernel_set']} | {check['tolerance_steps']} | "
                + (", ".join(check["near_boundary"]) or "none") + " | "
                + _lung_text(check.get("lungs")) + " |")
    else:
        kernel_table = []
    for c in result["configurations"]:
        classify = c.get("classify") or {}
        check = c.get("bench_check") or {}
        lines.append(
            f"| {c['name']} | {c['doc']} | {c['runtime'] or '-'} | "
            f"{(c.get('packages') or {}).get('numpy') or '-'} | {_yes(c['install']['passed'])} | "
            f"{_yes(check.get('passed'))} | {_yes(classify.get('verdicts_match_x86_64'))} | "
            f"{classify.get('max_steps_vs_card', '-')} | {classify.get('max_steps_vs_x86_64', '-')} | "
            f"{_yes((c.get('info') or {}).get('passed'))} | "
            f"{_yes((c.get('explain') or {}).get('passed'))} |")
    lines += kernel_table
    lines.append("")
    for c in result["configurations"]:
        lines += [f"## {c['name']}: {'PASS' if c['passed'] else 'FAIL'}", "",
                  f"Commands from {c['doc']}, run verbatim in a new venv in the emulated "
                  "Bookworm (as root; the repository copied to `~/covid-edge` as a clone):", "",
                  "```bash", *c["commands"], "```", ""]
        packages = ", ".join(f"{k} {v}" for k, v in (c.get("packages") or {}).items() if v)
        if packages:
            lines += [f"Installed: {packages}.", ""]
        classify = c.get("classify")
        if classify:
            lines += ["| sample | verdict | x86-64 | raw int8 | x86-64 raw | card raw |",
                      "|---|---|---|---:|---:|---:|"]
            for i in classify["images"]:
                lines.append(f"| {i['file']} | {i['verdict']} | {i['x86_64_verdict']} | "
                             f"{i['raw']} | {i['x86_64_raw']} | {i['card_raw']} |")
            ood = classify.get("max_ood_distance_relative_difference")
            if ood is not None:
                lines.append("")
                lines.append(f"Largest relative difference of the guard's feature distance "
                             f"from x86-64: {ood:.2e}.")
            lines.append("")
        if c.get("numpy2_control"):
            m = c["numpy2_control"]
            lines += [f"Then with numpy 2 installed over it, `classify` exits {m['exit_code']}: "
                      f"`{m['message']}`.", ""]
        if c.get("apt_numpy_module"):
            m = c["apt_numpy_module"]
            lines += [f"apt's numpy-built module in the venv ({m['module']}): "
                      f"{'imports and runs' if m['passed'] else 'FAILS'} with numpy "
                      f"{m['venv_numpy']}.", ""]
        for problem in c["problems"]:
            lines.append(f"- problem: {problem}")
        if c["problems"]:
            lines.append("")
    kernels = (result["x86_64"].get("kernels") or {})
    if kernels.get("resolvers"):
        files = list(kernels["card_raw"])
        lines += ["## Raw int8 outputs by implementation", "",
                  "The card's reference is LiteRT's XNNPACK on x86-64. The same runtime's other "
                  f"kernel sets on x86-64 ({kernels['runtime']}, `scripts/int8_kernels.py`) and "
                  "the runtimes on emulated Arm:", "",
                  "| implementation | " + " | ".join(f.rsplit(".", 1)[0] for f in files) + " |",
                  "|---|" + "---:|" * len(files),
                  "| model card | " + " | ".join(str(kernels["card_raw"][f]) for f in files)
                  + " |"]
        for resolver in kernels["resolvers"].values():
            lines.append(f"| x86-64, {resolver['kernels']} | "
                         + " | ".join(str(resolver["raw"].get(f)) for f in files) + " |")
        arm = {}
        for c in result["configurations"]:
            # every output unit, from bench check (classify gives the positive unit only)
            raw = {i["file"]: i["raw"] for i in (c.get("bench_check") or {}).get("images", [])}
            if raw:
                arm[c["name"]] = raw
                lines.append(f"| Arm, {c['name']} ({c['runtime']}) | "
                             + " | ".join(str(raw.get(f)) for f in files) + " |")
        lines.append("")
        for name, resolver in kernels["resolvers"].items():
            for config, raw in arm.items():
                if all(raw.get(f) == resolver["raw"].get(f) for f in files):
                    lines += [f"On Arm, {config} gives exactly the outputs of x86-64's "
                              f"{resolver['kernels']} on every sample.", ""]
    lines += ["## 32-bit Raspberry Pi OS (armhf)", "", result["armv7l"]["statement"], ""]
    return "\n".join(lines)


def _lung_text(lungs: dict | None) -> str:
    if not lungs:
        return "-"
    tolerance = lungs["tolerance"]
    return (f"{lungs['max_steps']}, {lungs['min_mask_agreement']:.4f} "
            f"({tolerance.get('raw_output_steps')}, {tolerance.get('mask_agreement')})")


def _cpu_lines(cpu: dict | None) -> list[str]:
    if not cpu:
        return []
    features = [name for name in ("asimd", "dotprod", "i8mm", "sve", "bf16") if cpu.get(name)]
    return [f"- Emulated CPU: {cpu['qemu_cpu']}; features the programs see (HWCAP): "
            f"{', '.join(features) or 'none of interest'}"
            + ("" if cpu.get("dotprod") else " (no dot product: a Raspberry Pi 4's int8 path)")
            + "."]


def _tolerance_lines(tolerance: dict | None) -> list[str]:
    if not tolerance:
        return []
    measured = tolerance.get("measured")
    if not measured:
        return [f"- The card's tolerance: {tolerance['raw_output_steps']} int8 output steps "
                "(fixed, not measured)."]
    return [f"- The card's tolerance: {tolerance['raw_output_steps']} int8 output steps = the "
            f"largest difference between x86-64 LiteRT's kernel sets "
            f"({', '.join(measured['kernel_sets'])}) on the "
            f"{measured['images_from']}, {measured['max_steps']}, plus "
            f"{measured['noise_floor_steps']} (`{measured['command']}`, on "
            f"{measured['runtime']})."]


def summary(result: dict) -> str:
    lines = [f"verify-arm64: {'PASS' if result['passed'] else 'FAIL'} "
             f"({result['emulated']['machine']}, Debian {result['emulated']['debian']}, "
             f"{result['emulated']['python']})"]
    for c in result["configurations"]:
        classify = c.get("classify") or {}
        lines.append(
            f"  {'PASS' if c['passed'] else 'FAIL'}  {c['name']:<15} {c['runtime'] or '-':<22} "
            f"numpy {(c.get('packages') or {}).get('numpy') or '-':<8} "
            f"steps vs card {classify.get('max_steps_vs_card', '-')}, "
            f"vs x86-64 {classify.get('max_steps_vs_x86_64', '-')}, by kernel set "
            f"{(c.get('bench_check') or {}).get('max_steps_by_kernel_set')}")
        for problem in c["problems"]:
            lines.append(f"        {problem}")
    lines.append("  " + result["armv7l"]["statement"])
    lines.append("  " + result["note"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the folder scripts/verify_arm64.sh filled")
    parser.add_argument("--docs", type=Path, help="write result.json and README.md here")
    parser.add_argument("--no-pypi", action="store_true", help="do not ask PyPI about armv7l")
    args = parser.parse_args(argv)
    result = build(args.out, query_pypi=not args.no_pypi)
    errors = validate(result)
    if errors:
        print("error: " + "; ".join(errors), file=sys.stderr)
        return 1
    if args.docs:
        args.docs.mkdir(parents=True, exist_ok=True)
        (args.docs / "result.json").write_text(json.dumps(result, indent=2) + "\n",
                                               encoding="utf-8")
        (args.docs / "README.md").write_text(markdown(result) + "\n", encoding="utf-8")
    print(summary(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
