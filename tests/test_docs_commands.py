"""Every shell command the docs pages show runs as shown and a test runs it, or parses.

Commands: `DOCS_COMMANDS` maps each shell command of the docs pages (docs/index.md,
docs/guide/*.md and every other page; found as the README's are, `readme_commands`),
experiment commands aside, to the tests that run it;
`NOT_RUN` names the few no test can run (a download, sudo, a GPU) with the reason, which
the page says next to the command. A command without an entry, an entry whose test does
not exist and an entry for a command the pages no longer show all fail.

Experiment commands (every ``python -m not_flower.experiments.compare ...`` and
``python benchmarks/<script>.py ...`` of every docs page, the recorded report.md files
included) take minutes to hours: a test cannot run them, but each is parsed as shown by
the command's own parser, the comparison's with everything it does before its first run
(`not_flower.experiments.compare.check_args`: methods, scenarios, ``--set`` and
``--set-for`` keys and values, every run's config).

Two rules keep the lists short: an inline code span that is the beginning of a longer
command the pages show (`flwr run`, `python -m not_flower.audit verify`) names that
command's program and is not a command of its own; a span that only sets an environment
variable (`NAME=value`) is not a command.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_readme_commands import COMMAND_START, readme_commands, split_markdown

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ALL_PAGES = sorted(DOCS.rglob("*.md"))
#: An experiment command: the comparison or a benchmarks script, with the interpreter.
EXPERIMENT = re.compile(
    r"(?:\.venv/bin/)?python3? (?:-m not_flower\.experiments\.compare|benchmarks/\w+\.py)\b"
)
ENV_ONLY = re.compile(r"[A-Z_][A-Z0-9_]*=\S*")
SPAN = re.compile(r"`([^`\n]+)`")


def spans(markdown: str) -> list[str]:
    """The inline code spans outside fenced blocks that begin like a command."""
    _, prose = split_markdown(markdown)
    return [s for s in SPAN.findall(prose) if COMMAND_START.match(s + " ")]


def names(commands: list[str], inline: list[str], blocks: list[str]) -> set[str]:
    """The inline spans that name a program rather than being a command: the beginning
    (whole words) of a longer command among ``commands`` that no block shows as a line of
    its own, or only an environment variable's setting.

    Parameters
    ----------
    commands : list[str]
        Every command of the pages considered.
    inline : list[str]
        Their inline code spans.
    blocks : list[str]
        Their lines of fenced blocks.

    Returns
    -------
    set[str]
    """
    return {
        s
        for s in inline
        if s not in blocks
        and (ENV_ONLY.fullmatch(s) or any(c.startswith(s + " ") for c in commands))
    }


def docs_commands(markdowns: list[str]) -> list[str]:
    """The shell commands of the pages, in order, without duplicates, names
    (:func:`names`) and experiment commands (:func:`experiment_commands`).

    Parameters
    ----------
    markdowns : list[str]
        The pages' texts.

    Returns
    -------
    list[str]
    """
    found, inline, blocks = [], [], []
    for markdown in markdowns:
        commands, own_spans = readme_commands(markdown), spans(markdown)
        found += commands
        inline += own_spans
        blocks += commands[: len(commands) - len(own_spans)]
    named = names(found, inline, blocks)
    return list(dict.fromkeys(c for c in found if c not in named and not EXPERIMENT.match(c)))


def experiment_commands(markdowns: list[str]) -> list[str]:
    """The experiment commands of the pages: each line of any fenced block (report.md
    files record theirs in plain ``` blocks) and each inline span that is one, names left
    out, without duplicates.

    Parameters
    ----------
    markdowns : list[str]
        The pages' texts.

    Returns
    -------
    list[str]
    """
    found, inline, blocks = [], [], []
    for markdown in markdowns:
        fenced, prose = split_markdown(markdown)
        for _, text in fenced:
            for line in text.splitlines():
                line = re.split(r"\s+#\s", line.strip(), maxsplit=1)[0].strip()
                if EXPERIMENT.match(line):
                    blocks.append(line)
        inline += [s for s in SPAN.findall(prose) if EXPERIMENT.match(s)]
    found = blocks + inline
    named = names(found, inline, blocks)
    return list(dict.fromkeys(c for c in found if c not in named))


THIS = "tests/test_docs_commands.py"
README_TESTS = "tests/test_readme_commands.py"
QUICKSTART_TEST = f"{README_TESTS}::test_quickstart_runs_as_shown"
TEST_COMMANDS_TEST = f"{README_TESTS}::test_test_commands_run_as_shown"
DEPLOY_TEST = "tests/test_deploy_local.py::test_local_sh_trains_unlearns_recovers_and_cleans_up"
TLS_TEST = (
    "tests/test_deploy_tls.py::test_tls_auth_named_target_restarted_keeps_id_and_stays_excluded"
)
INTERRUPT_TEST = "tests/test_interrupts.py::test_quickstart_stops_the_whole_run"
SUPERLINK_TEST = (
    "tests/test_local_superlink.py::"
    "test_two_flwr_homes_get_their_own_superlinks_and_stop_only_their_own"
)
CHECKPOINT_TESTS = (
    "tests/test_request_channels.py::test_unlearn_from_a_checkpoint_in_a_second_run",
    "tests/test_e2e_simulation.py::test_unlearning_from_a_checkpoint_after_training_finished",
)

#: Each shell command of the docs pages, experiments aside -> the tests that run it.
DOCS_COMMANDS = {
    # the same run; the test compares its results with the recorded file instead of writing it
    "python -m tests.golden_runs x": (
        "tests/test_golden.py::test_fixed_seed_results_are_unchanged",
    ),
    "python -m not_flower.audit verify outputs/demo": (
        "tests/test_fault_injection.py::"
        "test_verify_run_dir_catches_an_edited_record_and_a_swapped_checkpoint",
    ),
    "python -m not_flower.audit verify outputs/demo/unlearning-log.jsonl": (
        "tests/test_audit.py::test_python_dash_m",
    ),
    "python -m not_flower.audit show outputs/demo/unlearning-log.jsonl": (
        "tests/test_audit.py::test_cli_show",
    ),
    "python -m not_flower.audit verify LOG --expect-head <hash>": (
        "tests/test_audit.py::test_rewritten_chain_is_detected_only_with_expected_head",
    ),
    "OUT=$PWD/outputs/fmnist bash examples/quickstart.sh \"dataset='fashion-mnist' "
    "model='cnn' train-subset=12000\"": (
        f"{README_TESTS}::test_fashion_mnist_command_runs_as_shown",
    ),
    "flwr run . --stream --run-config \"out-dir='$PWD/outputs/r18' num-train-rounds=5 "
    "recovery.rounds=1 model='resnet18' local-epochs=1 batch-size=20\" --federation-config "
    '"num-supernodes=10 client-resources-num-cpus=1"': (
        "tests/test_e2e_models.py::test_model_learns_through_the_app",
    ),
    "bash examples/deploy/local.sh": (DEPLOY_TEST,),
    "bash examples/deploy/local.sh --nodes 4 --unlearn 2 --train-rounds 5 --recovery-rounds 3 "
    '--run-config "local-epochs=1" --out "$PWD/outputs/deploy-4"': (DEPLOY_TEST,),
    "sudo bash examples/deploy/netns.sh --unlearn 0 --kill-node 2 --kill-at-round 5": (
        "tests/test_deploy_netns.py::test_netns_nodes_survive_a_killed_node",
    ),
    "bash examples/deploy/tls_auth.sh --unlearn site-1 --restart-node 1 --restart-at-round 4": (
        TLS_TEST,
    ),
    "bash examples/deploy/local.sh --help": (f"{THIS}::test_deploy_local_help_runs_as_shown",),
    "flwr supernode ls": (DEPLOY_TEST, TLS_TEST),  # what the deploy scripts wait on
    "flwr run . <connection> --stream": (DEPLOY_TEST,),  # what local.sh runs
    "flwr build --app .": ("tests/test_app_bundle.py::test_bundle_holds_the_app_and_nothing_else",),
    "flwr supernode register": (TLS_TEST,),  # what tls_auth.sh runs
    "OUT=/abs/run2 bash examples/quickstart.sh \"init-checkpoint='/abs/run1/checkpoint-final.pt' "
    "num-train-rounds=0 unlearn.clients='1'\"": CHECKPOINT_TESTS,
    "python -m not_flower.evaluation.canary_cli check --checkpoint out/checkpoint-final.pt "
    "--seed SECRET": (
        "tests/test_canary.py::test_cli_detects_the_canaries_a_checkpoint_trained_on",
    ),
    "python -m not_flower.evaluation.canary_cli check --checkpoint out/checkpoint-final.pt "
    "--canary-seed 0 --client 1 --json check.json": (
        "tests/test_e2e_canary.py::test_the_client_gets_the_same_answer_from_the_checkpoints",
    ),
    # fails before round 1 and leaves the out-dir as it was (outputs guide)
    "bash examples/quickstart.sh \"unlearn.clients='99'\"": (
        "tests/test_target_check.py::test_run_fails_before_round_1_on_an_unknown_target",
        "tests/test_preflight.py::test_overwrite_moves_nothing_when_the_run_fails_its_checks",
    ),
    "bash examples/quickstart.sh": (QUICKSTART_TEST,),
    "bash scripts/test.sh": (TEST_COMMANDS_TEST,),
    'bash scripts/test.sh -m "not e2e"': (TEST_COMMANDS_TEST,),
    "bash scripts/setup.sh": (
        "tests/test_setup_script.py::test_setup_says_what_it_installs_then_done_with_the_time",
    ),
    "source scripts/flwr-env.sh": (SUPERLINK_TEST,),
    "nf_stop_local_superlink": (SUPERLINK_TEST,),
    "flwr run . --stream --run-config \"out-dir='$PWD/outputs/run1' unlearn.clients='3,7'\" "
    '--federation-config "num-supernodes=10 client-resources-num-cpus=1"': (
        "tests/test_e2e_flwr_run.py::test_flwr_run_trains_unlearns_recovers",
    ),
    "bash examples/quickstart.sh | head": (INTERRUPT_TEST,),
    "flwr stop": (INTERRUPT_TEST,),  # what cli.py runs on a signal
    "flwr ls --run-id ID --format json": (QUICKSTART_TEST,),  # what cli.py asks after the run
    'python not_flower/launch/cli.py run . --stream --run-config "..." ...': (QUICKSTART_TEST,),
    "flwr run . ...": (QUICKSTART_TEST,),
    'python not_flower/launch/cli.py check-run-config "k=v ..."': (
        "tests/test_cli.py::test_check_run_config_command_exits_2_naming_the_key",
        "tests/test_cli_values.py::test_check_run_config_command_checks_values",
    ),
    "bash scripts/lint.sh": ("tests/test_lint.py::test_lint_script_runs_as_shown",),
    ".venv/bin/ruff check --fix .": ("tests/test_lint.py::test_ruff_check_passes",),
    ".venv/bin/ruff format .": ("tests/test_lint.py::test_ruff_format_check_passes",),
    # what scripts/setup.sh runs: the test checks the call, with a stand-in python
    '.venv/bin/python -m pip install -c constraints.txt -e ".[dev]"': (
        "tests/test_setup_script.py::test_setup_says_what_it_installs_then_done_with_the_time",
    ),
}
#: The commands no test runs -> words the page says next to the command (the reason).
NOT_RUN = {
    "python3 -m venv .venv": "Not run by our tests",
    ".venv/bin/pip install torch==2.14.1 torchvision==0.29.1 --index-url "
    "https://download.pytorch.org/whl/cpu": "does not resolve",
    "sudo apt-get install dataset-fashion-mnist": "not run by the tests",
    "bash scripts/test-flwr-nightly.sh": "CI runs it",
    ".venv/bin/python -m pip install -e .": "not run by a test",
    "mkdir -p data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz "
    "data/fashion-mnist/": "It has not run",
}
#: How near the reason must be to the command (characters either way).
NEAR = 800


def _test_exists(test_id: str) -> bool:
    """Whether ``file::name`` names a test function defined in that file."""
    path, name = test_id.split("::")
    source = (ROOT / path).read_text() if (ROOT / path).is_file() else ""
    return re.search(rf"^def {re.escape(name)}\(", source, re.M) is not None


def test_names_and_environment_settings_are_not_commands():
    text = (
        "Run `flwr run` (or `tool run`) as shown; `NF_X=1` sets it; `flwr run . --x 1` too.\n"
        "```bash\nflwr run . --stream\nbash a.sh\n```\nand `bash a.sh`, `python -m pkg.cmd`\n"
        "```\npython -m not_flower.experiments.compare --out o --seeds 0\n```\n"
        "`python -m not_flower.experiments.compare`\n"
    )
    # `flwr run` begins a longer command: a name; `bash a.sh` is a block line: a command
    assert docs_commands([text]) == [
        "flwr run . --stream",
        "bash a.sh",
        "flwr run . --x 1",
        "python -m pkg.cmd",
    ]
    assert experiment_commands([text]) == [
        "python -m not_flower.experiments.compare --out o --seeds 0"
    ]


def test_every_docs_command_has_a_test_that_runs_it_or_says_why_not():
    found = docs_commands([p.read_text() for p in ALL_PAGES])
    listed = {**DOCS_COMMANDS, **NOT_RUN}
    untested = [c for c in found if c not in listed]
    assert not untested, (
        f"docs commands that no test runs: {untested}; add each to DOCS_COMMANDS with the "
        "test that runs it, or to NOT_RUN with the reason the page gives"
    )
    stale = [c for c in listed if c not in found]
    assert not stale, f"DOCS_COMMANDS or NOT_RUN name commands the docs no longer show: {stale}"
    both = sorted(set(DOCS_COMMANDS) & set(NOT_RUN))
    assert not both, f"commands both run and not run: {both}"
    missing = [t for tests in DOCS_COMMANDS.values() for t in tests if not _test_exists(t)]
    assert not missing, f"DOCS_COMMANDS names tests that do not exist: {missing}"


def test_the_page_says_why_a_command_is_not_run():
    texts = {p: re.sub(r"\s+", " ", p.read_text().replace("\\\n", " ")) for p in ALL_PAGES}
    for command, reason in NOT_RUN.items():
        pages = {p: t for p, t in texts.items() if command in t}
        assert pages, f"no page shows {command!r}"
        for page, text in pages.items():
            nearby = [
                text[max(0, m.start() - NEAR) : m.end() + NEAR]
                for m in re.finditer(re.escape(command), text)
            ]
            assert any(reason in near for near in nearby), (
                f"{page.relative_to(ROOT)}: say why `{command}` is not run by a test "
                f"({reason!r}) within {NEAR} characters of it"
            )


@pytest.mark.e2e
def test_deploy_local_help_runs_as_shown():
    proc = subprocess.run(
        ["bash", "examples/deploy/local.sh", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    # every option the deployment page names as common, and their NF_* variables
    page = (DOCS / "guide" / "deployment.md").read_text()
    common = page[page.index("Common options:") :].split("\n\n")[0]
    options = re.findall(r"`(--[\w-]+)", common)
    assert options, "the deployment page lists no common options"
    missing = [o for o in options if o not in proc.stdout]
    assert not missing, f"local.sh --help does not name {missing}"
    assert "NF_" in proc.stdout


# -- experiment commands: parsed as shown, not run ---------------------------------------

EXPERIMENTS = experiment_commands([p.read_text() for p in ALL_PAGES])


def parse_experiment(command: str) -> None:
    """Parse an experiment command as its program would, running nothing: the
    comparison's :func:`~not_flower.experiments.compare.check_args`, a benchmarks script's
    ``parse_args`` (or its ``build_parser``). Exits (SystemExit 2) on a bad argument.

    Parameters
    ----------
    command : str
        The command as the docs show it.
    """
    words = shlex.split(command)[1:]  # without the interpreter
    if words[:2] == ["-m", "not_flower.experiments.compare"]:
        from not_flower.experiments.compare import check_args  # noqa: PLC0415

        check_args(words[2:])
        return
    script = Path(words[0])
    sys.path.insert(0, str(ROOT / script.parent))
    try:
        module = __import__(script.stem)
    finally:
        sys.path.remove(str(ROOT / script.parent))
    if hasattr(module, "parse_args"):
        module.parse_args(words[1:])
    else:
        module.build_parser().parse_args(words[1:])


def test_experiment_commands_are_found_in_every_docs_page():
    assert len(EXPERIMENTS) >= 40, EXPERIMENTS
    scripts = {Path(shlex.split(c)[1]).name for c in EXPERIMENTS if "benchmarks/" in c}
    assert {"cost_to_forget.py", "faster_recovery.py", "gpu.py", "negation.py"} <= scripts


@pytest.mark.parametrize("command", EXPERIMENTS, ids=range(len(EXPERIMENTS)))
def test_experiment_command_parses_as_shown(command, capsys):
    try:
        parse_experiment(command)
    except SystemExit as exc:
        pytest.fail(f"{command}\ndoes not parse: {capsys.readouterr().err.strip()} ({exc})")


def test_a_bad_documented_command_would_fail(capsys):
    bad = (
        "python -m not_flower.experiments.compare --out o --seeds 0 --methods retrain nott",
        "python -m not_flower.experiments.compare --out o --methods retrain not "
        "--set-for ft local-epochs=2",
        "python -m not_flower.experiments.compare --out o --set num-train-round=3",
        "python benchmarks/faster_recovery.py --out o --settings fastest",
        "python benchmarks/cost_to_forget.py --reference-window 0",
    )
    for command in bad:
        with pytest.raises(SystemExit) as exc:
            parse_experiment(command)
        assert exc.value.code == 2, command
    err = capsys.readouterr().err
    assert "'nott'" in err and "'ft' is not among --methods" in err
    assert "num-train-round" in err and "fastest" in err


def test_compare_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    from not_flower.experiments.compare import main  # noqa: PLC0415

    out = tmp_path / "compare"
    argv = ["--out", str(out), "--seeds", "0", "1", "--scenarios", "backdoor"]
    code = main([*argv, "--methods", "retrain", "not", "--share-original", "--dry-run"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"backdoor seed{s} {name}: {out}/runs/backdoor/seed{s}/{folder}"
        for s in (0, 1)
        for name, folder in (("Original", "original"), ("Retrain", "retrain"), ("NoT", "not"))
    ] + ["6 run(s) planned; --dry-run: nothing run, nothing written"]
    assert not out.exists()
