"""The README's run commands run as shown and give what the README says.

A static check reads every `flwr run .` command in the README: one on the local simulation
must say how many SuperNodes (Flower's default is 2, where "forget client 0" removes half
the data) and stream its log. The Fashion-MNIST command is then run exactly as the README
shows it (a few cheap overrides appended to its own), where Debian's files are present.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from not_flower import local_superlink

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
FMNIST = Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")


def shell_commands(markdown: str) -> list[str]:
    """The shell commands a Markdown text shows: each line of a ```bash block (with its
    continuation lines joined) and each inline code span.

    Parameters
    ----------
    markdown : str
        The document.

    Returns
    -------
    list[str]
    """
    commands: list[str] = []
    prose: list[str] = []
    block: list[str] | None = None
    language = ""
    for line in markdown.splitlines():
        fence = re.match(r"\s*```(\w*)", line)
        if fence and block is None:
            block, language = [], fence.group(1)
        elif fence:
            if language in ("bash", "sh", ""):
                joined = re.sub(r"\s*\\\n\s*", " ", "\n".join(block))
                commands += [
                    c.strip()
                    for c in joined.splitlines()
                    if c.strip() and not c.strip().startswith("#")
                ]
            block = None
        elif block is not None:
            block.append(line)
        else:
            prose.append(line)
    commands += re.findall(r"`([^`\n]+)`", "\n".join(prose))
    return commands


def local_simulation_runs(commands: list[str]) -> list[str]:
    """The complete `flwr run .` commands on the local simulation (no connection named)
    with a run config; placeholders (`...`) left out."""
    return [
        c
        for c in commands
        if re.search(r"\bflwr run \. --", c) and "--run-config" in c and "..." not in c
    ]


def test_shell_commands_are_found_in_blocks_and_inline_spans():
    text = (
        'x\n```bash\nflwr run . --stream \\\n  --run-config "a=1"\n```\n'
        'and `flwr run . --run-config "b=2"` and `flwr run . --run-config "k=v ..."`'
    )
    cmds = shell_commands(text)
    assert 'flwr run . --stream --run-config "a=1"' in cmds
    assert local_simulation_runs(cmds) == [
        'flwr run . --stream --run-config "a=1"',
        'flwr run . --run-config "b=2"',
    ]


def test_every_local_simulation_command_names_its_supernodes_and_streams():
    runs = local_simulation_runs(shell_commands(README.read_text()))
    assert runs, "the README shows no `flwr run .` command with a run config"
    bad = [c for c in runs if "num-supernodes=" not in c or "--stream" not in c]
    assert not bad, f"commands that would run Flower's default 2 SuperNodes or show nothing: {bad}"


def _fmnist_command() -> str:
    lines = [
        c
        for c in shell_commands(README.read_text())
        if "examples/quickstart.sh" in c and "fashion-mnist" in c
    ]
    assert len(lines) == 1, lines
    return lines[0]


def test_fashion_mnist_command_goes_through_the_quickstart():
    words = shlex.split(_fmnist_command())
    assert words[0] == "OUT=$PWD/outputs/fmnist" and words[1:3] == [
        "bash",
        "examples/quickstart.sh",
    ]
    assert "dataset='fashion-mnist'" in words[3] and "train-subset=12000" in words[3]


@pytest.mark.e2e
@pytest.mark.skipif(not FMNIST.exists(), reason="Debian's dataset-fashion-mnist is absent")
def test_fashion_mnist_command_runs_as_shown(tmp_path):
    """The README's line, in a shell, with cheaper rounds appended to its overrides: ten
    clients train, client 0 is left out after the request, results where it says."""
    home = tmp_path / "flwr-home"
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        "PWD": str(tmp_path),
        **{k: str(v) for k, v in local_superlink.ports_for_home(home).items()},
    }
    cheap = " num-train-rounds=1 recovery-rounds=1 test-subset=500 local-epochs=1"
    command = re.sub(r'"$', cheap + '"', _fmnist_command())
    command = command.replace("$PWD/outputs", str(tmp_path / "outputs"))
    try:
        proc = subprocess.run(
            ["bash", "-c", command],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    finally:
        local_superlink.stop(home, grace=10.0)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "not-flower summary" in proc.stdout
    results = json.loads((tmp_path / "outputs" / "fmnist" / "results.json").read_text())
    rows = {r["round"]: r for r in results["rounds"]}
    assert rows[1]["participants"] == list(range(10))
    assert rows[2]["participants"] == list(range(1, 10))
