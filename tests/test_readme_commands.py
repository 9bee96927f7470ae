"""Every shell command the README shows is run by a test, and runs as shown.

`README_COMMANDS` maps each shell command of the README (each line of its ```bash blocks,
trailing comment dropped, and each inline code span that is a command) to the tests that
run it; a README command without an entry, or an entry whose test does not exist, fails.
The cheap ones are run here: the quickstart with fewer rounds (its summary must have the
README's layout), the two test commands (collection only), the Fashion-MNIST line with
fewer rounds appended to its overrides. A static check reads every `flwr run .` command
in the README and the docs pages: one on the local simulation must say how many
SuperNodes (Flower's default is 2, where "forget client 0" removes half the data) and
stream its log.
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

from not_flower.launch import local_superlink
from tests.deploy_utils import run_script

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOC_PAGES = sorted((ROOT / "docs").rglob("*.md"))
THIS = "tests/test_readme_commands.py"
QUICKSTART_TEST = f"{THIS}::test_quickstart_runs_as_shown"
DEPLOY_TEST = "tests/test_deploy_local.py::test_local_sh_trains_unlearns_recovers_and_cleans_up"
DOCS_TEST = "tests/test_docs_site.py::test_docs_build_strictly_as_shown"

#: Each shell command the README shows -> the tests that run it ("file::test").
README_COMMANDS = {
    "bash examples/quickstart.sh": (QUICKSTART_TEST,),
    'bash examples/quickstart.sh "recovery.rounds=5"': (QUICKSTART_TEST,),
    "flwr run": (QUICKSTART_TEST,),  # what the quickstart runs
    "flwr run . --stream": (QUICKSTART_TEST,),
    "bash scripts/test.sh": (f"{THIS}::test_test_commands_run_as_shown",),
    'bash scripts/test.sh -m "not e2e"': (f"{THIS}::test_test_commands_run_as_shown",),
    "OUT=$PWD/outputs/fmnist bash examples/quickstart.sh \"dataset='fashion-mnist' "
    "model='cnn' train-subset=12000\"": (f"{THIS}::test_fashion_mnist_command_runs_as_shown",),
    "bash examples/deploy/local.sh": (DEPLOY_TEST,),
    "flwr run . <connection>": (DEPLOY_TEST,),  # what local.sh runs
    "python -m not_flower.audit verify RUN_DIR": (
        "tests/test_audit.py::test_python_dash_m",
        "tests/test_fault_injection.py::"
        "test_verify_run_dir_catches_an_edited_record_and_a_swapped_checkpoint",
    ),
    "python -m not_flower.evaluation.canary_cli check": (
        "tests/test_canary.py::test_python_dash_m_canary_check_runs_as_the_readme_shows",
    ),
    "bash scripts/docs.sh": (DOCS_TEST,),
    "bash scripts/lint.sh": ("tests/test_lint.py::test_lint_script_runs_as_shown",),
    "mkdocs build --strict": (DOCS_TEST,),  # what scripts/docs.sh runs
}
#: How an inline code span that is a shell command begins.
COMMAND_START = re.compile(
    r"(bash|flwr|python3?|source|mkdocs|pip|sudo|\.venv/bin/\S+) |[A-Z_]+=\S* "
)
BIN = Path(sys.executable).parent
FMNIST = Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")


def split_markdown(markdown: str) -> tuple[list[tuple[str, str]], str]:
    """The fenced blocks of a Markdown text, as ``(language, text with continuation lines
    joined)``, and the prose outside them.

    Parameters
    ----------
    markdown : str
        The document.

    Returns
    -------
    tuple[list[tuple[str, str]], str]
    """
    blocks: list[tuple[str, str]] = []
    prose: list[str] = []
    block: list[str] | None = None
    language = ""
    for line in markdown.splitlines():
        fence = re.match(r"\s*```(\w*)", line)
        if fence and block is None:
            block, language = [], fence.group(1)
        elif fence:
            blocks.append((language, re.sub(r"\s*\\\n\s*", " ", "\n".join(block))))
            block = None
        elif block is not None:
            block.append(line)
        else:
            prose.append(line)
    return blocks, "\n".join(prose)


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
    blocks, prose = split_markdown(markdown)
    commands = [
        c.strip()
        for language, text in blocks
        if language in ("bash", "sh", "")
        for c in text.splitlines()
        if c.strip() and not c.strip().startswith("#")
    ]
    return commands + re.findall(r"`([^`\n]+)`", prose)


def readme_commands(markdown: str) -> list[str]:
    """The shell commands a Markdown text shows, as `README_COMMANDS` names them: each line
    of a ```bash or ```sh block (continuation lines joined, a trailing comment dropped) and
    each inline code span outside blocks that begins like a command (`COMMAND_START`).

    Parameters
    ----------
    markdown : str
        The document.

    Returns
    -------
    list[str]
    """
    blocks, prose = split_markdown(markdown)
    commands = []
    for language, text in blocks:
        if language not in ("bash", "sh"):
            continue
        for c in text.splitlines():
            c = re.split(r"\s+#\s", c.strip(), maxsplit=1)[0].strip()
            if c and not c.startswith("#"):
                commands.append(c)
    spans = re.findall(r"`([^`\n]+)`", prose)
    return commands + [s for s in spans if COMMAND_START.match(s + " ")]


def _test_exists(test_id: str) -> bool:
    """Whether ``file::name`` names a test function defined in that file."""
    path, name = test_id.split("::")
    source = (ROOT / path).read_text() if (ROOT / path).is_file() else ""
    return re.search(rf"^def {re.escape(name)}\(", source, re.M) is not None


def test_readme_commands_are_found_in_bash_blocks_and_command_spans():
    text = (
        'See `bash a.sh "k=1"` and `strategies.NoT`.\n```bash\nbash b.sh \\\n  --x 1'
        "   # a comment\n# only a comment\n```\n```text\nnot-flower summary\n```\n"
    )
    assert readme_commands(text) == ["bash b.sh --x 1", 'bash a.sh "k=1"']


def test_every_readme_command_has_a_test_that_runs_it():
    found = readme_commands(README.read_text())
    untested = [c for c in found if c not in README_COMMANDS]
    assert not untested, (
        f"README commands that no test runs: {untested}; add each to README_COMMANDS with "
        "the test that runs it"
    )
    stale = [c for c in README_COMMANDS if c not in found]
    assert not stale, f"README_COMMANDS names commands the README no longer shows: {stale}"
    missing = [t for tests in README_COMMANDS.values() for t in tests if not _test_exists(t)]
    assert not missing, f"README_COMMANDS names tests that do not exist: {missing}"


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
    runs = [
        c
        for page in [README, *DOC_PAGES]
        for c in local_simulation_runs(shell_commands(page.read_text()))
    ]
    assert runs, "the README and the docs show no `flwr run .` command with a run config"
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


def _run_in_shell(command: str, tmp_path: Path, timeout: int, **env_extra: str):
    """``bash -c COMMAND`` from the checkout with a FLWR_HOME of its own (whose local
    SuperLink is stopped afterwards, by pid); stdout and stderr together."""
    home = tmp_path / "flwr-home"
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        **env_extra,
        **{k: str(v) for k, v in local_superlink.ports_for_home(home).items()},
    }
    try:
        return run_script(
            ["bash", "-c", command], cwd=ROOT, env=env, merge_stderr=True, timeout=timeout
        )
    finally:
        local_superlink.stop(home, grace=10.0)


@pytest.mark.e2e
@pytest.mark.skipif(not FMNIST.exists(), reason="Debian's dataset-fashion-mnist is absent")
def test_fashion_mnist_command_runs_as_shown(tmp_path):
    """The README's line, in a shell, with cheaper settings appended to its overrides (a
    key given again takes its later value): ten clients train, client 0 is left out after
    the request, results where it says."""
    cheap = (
        " num-train-rounds=1 recovery.rounds=1 test-subset=500 local-epochs=1"
        " train-subset=3000 fraction-evaluate=0"
    )
    command = re.sub(r'"$', cheap + '"', _fmnist_command())
    command = command.replace("$PWD/outputs", str(tmp_path / "outputs"))
    proc = _run_in_shell(command, tmp_path, 600, PWD=str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "not-flower summary" in proc.stdout
    results = json.loads((tmp_path / "outputs" / "fmnist" / "results.json").read_text())
    rows = {r["round"]: r for r in results["rounds"]}
    assert rows[1]["participants"] == list(range(10))
    assert rows[2]["participants"] == list(range(1, 10))


def _readme_command(start: str) -> str:
    """The one README command that begins with ``start`` and has overrides in quotes."""
    lines = [c for c in readme_commands(README.read_text()) if c.startswith(start) and '"' in c]
    assert len(lines) == 1, lines
    return lines[0]


def _expected_summary() -> list[str]:
    """The lines of the README's expected quickstart summary (its ```text block)."""
    block = re.search(r"```text\n(not-flower summary.*?)```", README.read_text(), re.S)
    assert block, "the README shows no expected quickstart summary"
    return block.group(1).splitlines()


@pytest.mark.e2e
def test_quickstart_runs_as_shown(tmp_path):
    """The README's override example, with fewer training rounds appended: the summary has
    the README's layout, and client 0 is in every training round and in no recovery round.
    """
    out = tmp_path / "demo"
    command = _readme_command('bash examples/quickstart.sh "recovery.rounds=')
    # every recovery round (the stopping rule would end it where it fires)
    command = re.sub(
        r'"$',
        ' num-train-rounds=3 local-epochs=1 test-subset=200 recovery.run-to-cap=true"',
        command,
    )
    proc = _run_in_shell(command, tmp_path, 400, OUT=str(out))
    assert proc.returncode == 0, proc.stdout[-3000:]
    expected = _expected_summary()
    assert expected[0].split(" (results in")[0] in proc.stdout
    assert expected[1].strip() in proc.stdout  # the column header
    # the model rows, in the README's order (each README row's name, then 5 numbers)
    readme_rows = [
        line.split()[0] for line in expected[2:] if re.search(r"(\s+\d+\.\d+){5}$", line)
    ]
    assert readme_rows[:3] == ["original", "negated", "recovered"], readme_rows
    printed = re.findall(r"^.*\s(\S+)(?:\s+\d+\.\d+){5}$", proc.stdout, re.M)
    results = json.loads((out / "results.json").read_text())
    assert printed == [r for r in readme_rows if r in results["models"]], printed
    assert set(readme_rows[:3]) <= set(printed)
    assert "stopping rule" in proc.stdout
    # the out-dir holds what the README says: results.json, three checkpoints, state.json
    # and the two audit files (dot-files such as the run's .lock aside)
    assert "three checkpoints, `state.json`" in README.read_text().replace("\n", " ")
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert files == sorted(
        [
            "results.json",
            "checkpoint-original.pt",
            "checkpoint-latest.pt",
            "checkpoint-final.pt",
            "state.json",
            "unlearning-record.json",
            "unlearning-log.jsonl",
        ]
    ), files
    rows = {r["round"]: r for r in results["rounds"]}
    assert sorted(rows) == list(range(9))  # round 0, 3 training rounds, 5 recovery rounds
    assert all(rows[r]["participants"] == list(range(10)) for r in (1, 2, 3))
    assert all(rows[r]["participants"] == list(range(1, 10)) for r in range(4, 9))


@pytest.mark.e2e
def test_test_commands_run_as_shown():
    """Both README test commands, collecting only: the fast loop leaves the e2e tests out."""
    counts = {}
    commands = ("bash scripts/test.sh", 'bash scripts/test.sh -m "not e2e"')
    procs = {  # both at once: each collects on one core
        command: subprocess.Popen(
            ["bash", "-c", f"{command} --collect-only -p no:cacheprovider"],
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for command in commands
    }
    try:
        done = {c: (r, *r.communicate(timeout=300)) for c, r in procs.items()}
    finally:  # stopped on every way out, a timeout included
        for running in procs.values():
            if running.poll() is None:
                running.kill()
                running.wait()
    for command, (running, out, err) in done.items():
        assert command in README_COMMANDS
        proc = subprocess.CompletedProcess(running.args, running.returncode, out, err)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        match = re.search(
            r"^(\d+)(?:/(\d+))? tests? collected(?: \((\d+) deselected\))?", proc.stdout, re.M
        )
        assert match, proc.stdout[-2000:]
        counts[command] = match
    everything = counts["bash scripts/test.sh"]
    fast = counts['bash scripts/test.sh -m "not e2e"']
    assert everything.group(2) is None and int(everything.group(1)) > 800
    assert int(fast.group(2)) == int(everything.group(1))  # the same suite
    assert int(fast.group(3)) > 0 and int(fast.group(1)) + int(fast.group(3)) == int(fast.group(2))
