"""The console script ends without the interpreter's teardown (cli.entry): what a script relies
on at exit must survive that: exit codes, flushed output, atexit handlers, running threads."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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


def test_ctrl_c_is_exit_130_with_one_line_and_leaves_an_earlier_csv_whole(tmp_path, models_dir):
    """Not click's "Aborted!" with exit 1, which reads as "some inputs could not be read"."""
    import signal

    from conftest import CXR

    earlier = tmp_path / "results.csv"
    earlier.write_text("an earlier run\n")
    env = {**subprocess_env(), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "covid_edge", "classify", str(CXR / "normal"), "--model",
         str(models_dir), "--csv", str(earlier), "--force"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT,
        # An ignored SIGINT is inherited, and pytest-xdist's workers ignore it: a terminal's
        # Ctrl-C reaches a command with the default disposition.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        process.stdout.readline()  # the table's header: the command is running
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err[-2000:]
    assert "interrupted (Ctrl-C)" in err
    assert "Traceback" not in err and "Aborted!" not in err
    assert earlier.read_text() == "an earlier run\n"
    assert not list(tmp_path.glob(".results.csv.*"))  # no partial file left
