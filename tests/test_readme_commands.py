"""The commands in the README and docs run as written: the fast ones are run verbatim from a
clone-shaped folder (../shared beside it), the others are checked against their command's
options (a renamed option or a verb that no longer exists fails here, not for a reader).
The pipeline table's train and convert commands must rebuild the release: they are the
model card's `reproduce` commands with its defaults."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from conftest import REPO_ROOT, SHARED, subprocess_env

DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
# Verbs cheap enough to run on every CI run (seconds each).
FAST = {("classify",), ("info",), ("bench", "check"), ("explain",), ("check-edgetpu",),
        ("bench", "shift", "--list")}


def documented_commands() -> list[tuple[str, str]]:
    """(document, command line) for every `covid-edge ...` line of a fenced shell block."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for block in re.findall(r"^```(?:bash|sh|shell|console)?\n(.*?)^```", text, re.S | re.M):
            for line in block.splitlines():
                line = line.split("  #")[0].strip()
                if line.startswith("covid-edge "):
                    for part in line.split("&&"):
                        found.append((document.name, part.strip()))
    return found


def resolve(words: list[str]):
    """The click command a command line names, and the words left for it."""
    from covid_edge.cli import main

    command, ctx, rest = main, click.Context(main, info_name="covid-edge"), list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(ctx, rest[0])
        assert sub is not None, f"no such command: {' '.join(words)}"
        ctx = click.Context(sub, info_name=rest[0], parent=ctx)
        command, rest = sub, rest[1:]
    return command, rest


COMMANDS = documented_commands()


def test_the_docs_hold_commands():
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("document, line", COMMANDS, ids=[c[1][:60] for c in COMMANDS])
def test_documented_options_exist(document, line):
    words = shlex.split(line.split(">")[0])[1:]
    command, rest = resolve(words)
    known = {opt for param in command.params for opt in param.opts + param.secondary_opts}
    known |= {"--help"}
    for word in rest:
        if word.startswith("--"):
            assert word.split("=")[0] in known, f"{document}: {line}: no option {word}"


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A folder shaped like a fresh clone with ../shared beside it; writes land here."""
    root = tmp_path_factory.mktemp("docs")
    (root / "shared").symlink_to(SHARED)
    work = root / "covid-edge"
    work.mkdir()
    for name in ("models", "src", "README.md", "docs"):
        (work / name).symlink_to(REPO_ROOT / name)
    return work


FAST_COMMANDS = sorted({line for _, line in COMMANDS
                        if any(tuple(shlex.split(line)[1:1 + len(verb)]) == verb
                               for verb in FAST)})


@pytest.mark.parametrize("line", FAST_COMMANDS)
def test_fast_documented_commands_run_verbatim(line, clone):
    if "edgetpu" in line and "--device" in line:
        pytest.skip("needs a Coral Edge TPU")
    if "_edgetpu.tflite" in line:
        pytest.skip("names the Edge TPU compiler's output, which is not shipped")
    if re.search(r"\b(scan|chest|photo)\.(png|jpg)|scans/", line):
        pytest.skip("names the reader's own image")
    done = subprocess.run(["bash", "-c", line.replace("covid-edge ", f"{sys.executable} -m "
                                                      "covid_edge ", 1)],
                          cwd=clone, env=subprocess_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr


def test_the_pipeline_table_rebuilds_the_release(models_dir):
    """README's train/convert commands plus the defaults are the card's reproduce commands."""
    card = json.loads((models_dir / "model_card.json").read_text())
    readme = (REPO_ROOT / "README.md").read_text()
    # A verb may have several rows (a run continued from another: two trains).
    table = {verb: re.findall(rf"\| {verb}[^|`]* \| `(covid-edge {verb} [^`]*)`", readme)
             for verb in ("train", "average", "convert", "fit-guard")}
    for recorded in card["reproduce"]:
        words = shlex.split(recorded)
        verb = words[1]
        command, _ = resolve(words[1:2])
        # Resilient: the run folder need not exist here; only the settings are compared.
        reproduced = command.make_context(verb, words[2:], resilient_parsing=True)
        differences = []
        for row in table[verb]:
            documented = command.make_context(verb, shlex.split(row)[2:],
                                              resilient_parsing=True)
            differences.append({name: (documented.params[name], value)
                                for name, value in reproduced.params.items()
                                if documented.params[name] != value
                                and name not in ("out_dir", "model")})
        assert table[verb] and min(map(len, differences)) == 0, (
            f"no README {verb} row has the settings of the card's {recorded!r}: {differences}")
