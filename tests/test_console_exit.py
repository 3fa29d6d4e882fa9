"""The console script ends without the interpreter's teardown (cli.entry): what a script relies
on at exit must survive that: exit codes, flushed output, atexit handlers, running threads."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import REPO_ROOT, subprocess_env


def run_entry(prelude: str, *args: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(prelude) + textwrap.dedent(f"""
        import sys
        sys.argv = ["covid-edge", *{list(args)!r}]
        from covid_edge.cli import entry
        entry()
        print("not reached: entry() ends the process")
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=subprocess_env(), cwd=REPO_ROOT, timeout=120)


def test_exit_code_and_atexit_handlers_survive(tmp_path):
    done = run_entry("""
        import atexit
        atexit.register(lambda: print("atexit ran", flush=True))
    """, "classify", str(tmp_path / "missing.png"))
    assert done.returncode == 2, done.stderr
    assert "no such file" in done.stderr
    assert done.stdout.strip().splitlines()[-1] == "atexit ran"
    assert "not reached" not in done.stdout


def test_buffered_output_reaches_a_pipe(covid_xray, models_dir):
    done = run_entry("", "classify", str(covid_xray), "--model", str(models_dir), "--json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("}")  # the whole JSON document, not a cut buffer


def test_a_message_exit_is_printed_with_code_1():
    done = run_entry("""
        import covid_edge.cli
        def refuse(**_):
            raise SystemExit("refused for a reason")
        covid_edge.cli.main = refuse
    """)
    assert done.returncode == 1
    assert "refused for a reason" in done.stderr


def test_a_running_thread_is_waited_for(tmp_path):
    marker = tmp_path / "written-by-thread"
    done = run_entry(f"""
        import threading, time
        def late_write():
            time.sleep(0.3)
            open({str(marker)!r}, "w").write("done")
        threading.Thread(target=late_write).start()
    """, "--version")
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "done"


@pytest.mark.parametrize("as_json, late", [(False, False), (True, False), (True, True)],
                         ids=["table", "json-while-importing", "json-while-classifying"])
def test_ctrl_c_is_exit_130_with_one_line_and_leaves_an_earlier_csv_whole(tmp_path, models_dir,
                                                                          as_json, late):
    """Not click's "Aborted!" with exit 1, which reads as "some inputs could not be read";
    with --json, the JSON document every failure prints, whether the command had started
    (its own handler prints it) or was still importing (the root group's)."""
    import signal

    from conftest import CXR

    if not CXR.is_dir():
        pytest.skip(f"needs {CXR}")
    earlier = tmp_path / "results.csv"
    earlier.write_text("an earlier run\n")
    env = {**subprocess_env(), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "covid_edge", "classify", str(CXR / "normal"), "--model",
         str(models_dir), "--csv", str(earlier), "--force", *(["--json"] if as_json else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT,
        # An ignored SIGINT is inherited, and pytest-xdist's workers ignore it: a terminal's
        # Ctrl-C reaches a command with the default disposition.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        if as_json:  # nothing is printed before the end: wait until a second thread runs
            _wait_for_threads(process.pid, 2, seconds=5)  # (numpy's or the pipeline's)
            if late:
                time.sleep(3)  # well into the folder, which takes half a minute and more
        else:
            process.stdout.readline()  # the table's header: the command is running
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err[-2000:]
    assert "interrupted (Ctrl-C)" in err
    if not as_json:  # interrupted after the table's header, so while classifying: how far
        assert "images classified before the interruption; " in err
        assert f"{earlier} not written" in err
    assert "Traceback" not in err and "Aborted!" not in err
    assert earlier.read_text() == "an earlier run\n"
    if as_json:
        document = json.loads(out)
        assert document["exit_code"] == 130 and document["error"] == "interrupted (Ctrl-C)"
    assert not list(tmp_path.glob(".results.csv.*"))  # no partial file left


def _wait_for_threads(pid: int, count: int, seconds: float) -> None:
    """Until the process runs `count` threads, or `seconds` have passed: a second thread
    means the command's own imports have begun, inside the handler that turns Ctrl-C into
    exit 130."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/status") as status:
                threads = next(int(line.split()[1]) for line in status
                               if line.startswith("Threads:"))
        except (OSError, StopIteration):
            threads = 0
        if threads >= count:
            return
        time.sleep(0.05)
