"""The Edge TPU step of `covid-edge convert --edgetpu`: check the int8 model, then compile it
with `edgetpu_compiler` when this machine has it, or say exactly what to run where it does.

The compiler runs only on x86-64 Debian-like Linux (Coral: https://coral.ai/docs/edgetpu/compiler)
and is not on PyPI, so most conversions will not find it. The static check
(covid_edge.edgetpu.compatibility) runs everywhere and refuses a model that would not map
fully: compiling it would leave part of it on the Raspberry Pi's CPU behind a USB round trip.

The int8 model's int8 input and output are kept for the Edge TPU build (not uint8): the Edge
TPU runtime accepts int8 host data since runtime 12 (libedgetpu api/runtime_version.h,
kWithInt8HostDataTypeSupport), covid-edge's runtime quantizes to whatever type the input
tensor has, and one quantized file for both devices means the Edge TPU build computes what the
model card's int8 metrics describe. docs/coral.md has the details.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from ..model_card import sha256_file
from .compatibility import EDGETPU_CUSTOM_OP, check_file
from .package import read_compiled_model
from .tflite_graph import read_graph

COMPILER = "edgetpu_compiler"
LOG_NAME = "edgetpu_compiler.log"
COMPILED_SUFFIX = "_edgetpu.tflite"
COMPILER_TIMEOUT_S = 600
COLAB_URL = "https://colab.research.google.com/github/google-coral/tutorials/blob/master/" \
            "compile_for_edgetpu.ipynb"
_COMPILER_VERSION = re.compile(r"Edge TPU Compiler version (\S+)")


class EdgeTpuCompileError(Exception):
    """The model cannot be prepared for the Edge TPU; the message says why."""


def compiled_name(model_path: str | Path) -> str:
    """The file edgetpu_compiler writes for `model_path` (INPUT_edgetpu.tflite)."""
    return Path(model_path).stem + COMPILED_SUFFIX


def compile_command(model_path: str | Path, out_dir: str | Path,
                    compiler: str = COMPILER) -> list[str]:
    """`-s` prints the per-op mapping table (kept in the log), `-o` the output folder."""
    return [compiler, "-s", "-o", str(out_dir), str(model_path)]


def compiler_version(output: str) -> str | None:
    """The version from the compiler's first line ("Edge TPU Compiler version X.Y.Z")."""
    match = _COMPILER_VERSION.search(output or "")
    return match.group(1) if match else None


def prepare_for_edgetpu(model_path: str | Path, out_dir: str | Path,
                        compiler: str | None = None, log=print) -> dict:
    """Check `model_path`, compile it if the compiler is on PATH, and return the model card's
    "edgetpu" entry. Raises EdgeTpuCompileError when the model would not map fully or the
    compiler fails."""
    model_path, out_dir = Path(model_path), Path(out_dir)
    report = check_file(model_path)
    if not report.fully_mapped:
        raise EdgeTpuCompileError(_not_mapped_message(model_path, report))
    command = compile_command(model_path, out_dir)
    entry = {
        "file": compiled_name(model_path),
        "device": "edgetpu",
        "compiled_from": model_path.name,
        "static_check": f"{report.verdict}: all {len(report.ops)} ops map (covid-edge "
                        "check-edgetpu)",
        "command": shlex.join(command),
        "compiled": False,
    }
    executable = shutil.which(compiler or COMPILER)
    if executable is None:
        entry["note"] = (f"{COMPILER} is not on PATH here: run the command on an x86-64 "
                         f"Debian/Ubuntu machine (or Coral's Colab, {COLAB_URL}) and copy "
                         f"{entry['file']} beside {model_path.name}")
        return entry

    log(f"compiling for the Edge TPU: {entry['command']}")
    try:
        done = subprocess.run([executable, *command[1:]], capture_output=True, text=True,
                              timeout=COMPILER_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise EdgeTpuCompileError(f"{COMPILER} did not finish in {COMPILER_TIMEOUT_S} s") \
            from None
    except OSError as exc:
        raise EdgeTpuCompileError(f"{COMPILER} could not be started ({exc})") from None
    log_path = out_dir / LOG_NAME
    log_path.write_text(f"$ {entry['command']}\n{done.stdout}{done.stderr}", encoding="utf-8")
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise EdgeTpuCompileError(f"{COMPILER} failed with exit code {done.returncode} "
                                  f"({last}); its full output is in {log_path}")
    compiled_path = out_dir / entry["file"]
    if not compiled_path.is_file():
        raise EdgeTpuCompileError(f"{COMPILER} reported success but wrote no {compiled_path}; "
                                  f"see {log_path}")
    entry.update(describe_compiled(compiled_path))
    entry.update({"compiled": True, "log": LOG_NAME,
                  "compiler_version": compiler_version(done.stdout)})
    if entry["ops_on_cpu"]:
        log(f"warning: the compiler left {len(entry['ops_on_cpu'])} op(s) on the CPU: "
            f"{', '.join(entry['ops_on_cpu'][:5])}; see {log_path}")
    return entry


def describe_compiled(compiled_path: str | Path) -> dict:
    """What the card records about a compiled file, read from the file itself."""
    compiled_path = Path(compiled_path)
    compiled = read_compiled_model(compiled_path)
    if compiled is None:
        raise EdgeTpuCompileError(f"{compiled_path.name} holds no {EDGETPU_CUSTOM_OP}: the "
                                  "compiler mapped nothing to the Edge TPU")
    graph = read_graph(compiled_path)
    on_cpu = [op.label for sg in graph.subgraphs for op in sg.operators
              if op.custom_code != EDGETPU_CUSTOM_OP]
    return {
        "bytes": compiled_path.stat().st_size,
        "sha256": sha256_file(compiled_path),
        "edgetpu_custom_ops": len(compiled.packages),
        "ops_on_cpu": on_cpu,
        "min_runtime_version": compiled.min_runtime_version,
        "input_dtype": compiled.input_dtypes[0] if compiled.input_dtypes else None,
        "output_dtype": compiled.output_dtypes[0] if compiled.output_dtypes else None,
    }


def _not_mapped_message(model_path: Path, report) -> str:
    first = report.first_unmapped
    parts = [f"{model_path.name} would not map fully to the Edge TPU "
             f"({report.mapped} of {len(report.ops)} ops)"]
    if first is not None:
        parts.append(f"first op left on the CPU: #{first.index} {first.label}: "
                     f"{first.reasons[0] if first.reasons else 'unsupported'}")
    parts += [f"model: {issue}" for issue in report.model_issues]
    parts.append(f"details: covid-edge check-edgetpu {model_path}")
    return "; ".join(parts)

