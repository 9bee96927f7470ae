"""The method registry: every registered method is a config choice, has a report label and
style, builds its strategy, and declares what the strategy's unlearner declares."""

from __future__ import annotations

import pytest

from not_flower.common import config
from not_flower.common.methods import (
    BASELINE_METHODS,
    METHOD_NAMES,
    REGISTRY,
    REPORT_ORDER,
    VARIANT_NAMES,
    Method,
    resolve,
)
from not_flower.experiments import compare, report
from tests.golden_runs import GOLDEN_DIR

#: The app's methods (what ``method = ...`` takes); the registry adds comparison variants.
METHODS = METHOD_NAMES


def _cfg(method: str, tmp_path):
    run_config = {"method": method, "out-dir": str(tmp_path), "unlearn.clients": "1"}
    if REGISTRY[method].requirements.server_data:
        run_config["fukd.server-data-fraction"] = 0.1
    return config.parse_run_config(run_config)


def test_the_six_methods_are_registered_in_config_and_report_order():
    assert METHODS == ("not", "ft", "retrain", "pgd", "federaser", "fukd")
    assert VARIANT_NAMES == ("not-weights-only", "retrain-recipe")
    assert REPORT_ORDER == (
        "retrain",
        "retrain-recipe",
        "ft",
        "not",
        "not-weights-only",
        "pgd",
        "federaser",
        "fukd",
    )
    assert BASELINE_METHODS == ("pgd", "federaser", "fukd")
    assert all(isinstance(spec, Method) and spec.name == name for name, spec in REGISTRY.items())


@pytest.mark.parametrize("method", METHODS)
def test_every_method_is_a_config_choice_and_parses(method, tmp_path):
    assert method in config.METHODS
    assert _cfg(method, tmp_path).method == method
    assert (method in config.BASELINE_METHODS) == REGISTRY[method].baseline


def test_an_unregistered_method_is_refused_naming_the_choices():
    with pytest.raises(config.ConfigError, match="not, ft, retrain, pgd, federaser, fukd"):
        config.parse_run_config({"method": "scrub"})


@pytest.mark.parametrize("method", tuple(REGISTRY))
def test_every_method_has_a_report_label_and_plot_style(method):
    from matplotlib.colors import is_color_like

    spec = REGISTRY[method]
    assert (
        method in report.METHODS
        and method
        in compare.parse_args(
            ["--out", "unused", "--methods", method, "--scenarios", "iid"]
        ).methods
    )
    assert report.METHOD_NAMES[method] == spec.label
    assert report.DEFAULT_REQUIREMENTS[method] == spec.requirements.to_dict()
    assert is_color_like(spec.color) and spec.linestyle in ("-", "--", "-.", ":")
    k = 10 if spec.recovers else None
    assert report.row_label(method, k) == (f"{spec.label}@10" if spec.recovers else spec.label)


def test_a_variant_runs_as_its_app_method_with_its_keys_fixed(tmp_path):
    spec = REGISTRY["not-weights-only"]
    assert spec.app_method == "not" and dict(spec.run_config) == {"negate.bias": False}
    assert REGISTRY["not"].app_method == "not" and not REGISTRY["not"].run_config
    args = compare.parse_args(
        [
            "--out",
            str(tmp_path),
            "--methods",
            "not",
            "not-weights-only",
            "--scenarios",
            "iid",
            "--seeds",
            "0",
            "--share-original",
        ]
    )
    runs = {r.method: r for r in compare.plan_runs(args)}
    wo, plain = runs["not-weights-only"].run_config, runs["not"].run_config
    assert wo["method"] == plain["method"] == "not"
    assert wo["negate.bias"] is False and "negate.bias" not in plain
    assert wo["out-dir"].endswith("not-weights-only") and plain["out-dir"].endswith("not")
    # the variant starts from the shared original like NoT does
    assert wo["init-checkpoint"] == plain["init-checkpoint"]
    assert config.parse_run_config(wo).negate_bias is False
    # the app's own method key does not take the variant's name
    with pytest.raises(config.ConfigError, match="not-weights-only"):
        config.parse_run_config({"method": "not-weights-only"})


def test_a_set_that_contradicts_a_variant_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        compare.parse_args(
            [
                "--out",
                "unused",
                "--methods",
                "not-weights-only",
                "--scenarios",
                "iid",
                "--set",
                "negate.bias=true",
            ]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "not-weights-only fixes negate.bias=false" in err and "negate.bias=True" in err
    # saying the same is fine
    args = compare.parse_args(
        [
            "--out",
            "unused",
            "--methods",
            "not-weights-only",
            "--scenarios",
            "iid",
            "--set",
            "negate.bias=false",
        ]
    )
    assert args.methods == ["not-weights-only"]


def test_report_colours_tell_the_methods_apart():
    assert len({spec.color for spec in REGISTRY.values()}) == len(REGISTRY)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_builds_a_strategy_that_needs_what_the_registry_says(method, tmp_path):
    from not_flower.app.server_app import REQUIREMENTS, make_strategy
    from strategies import NegationPlan, NoT
    from strategies.unlearner import REQUIREMENT_KEYS

    spec = REGISTRY[method]
    strategy = make_strategy(
        _cfg(method, tmp_path), NegationPlan((), ("fc.weight",)), None, out_dir=tmp_path
    )
    assert isinstance(strategy, NoT)
    assert tuple(spec.requirements.to_dict()) == REQUIREMENT_KEYS
    assert strategy.unlearner.requirements == spec.requirements
    assert spec.requirements.to_dict() == REQUIREMENTS[method]
    # Retrain is FT from a fresh model (its strategy is FT's, with the request at round 1)
    assert strategy.unlearner.name == REGISTRY["ft" if method == "retrain" else method].label
    # recovery options reach every method that recovers; Retrain trains as the original did
    assert spec.recovers == (method != "retrain")


@pytest.mark.parametrize("method", METHODS)
def test_every_method_has_its_fixed_seed_results_recorded(method):
    # tests/test_golden.py runs each one end to end against this file (marked e2e)
    assert (GOLDEN_DIR / f"{method}.json").is_file(), (
        f"record it: python -m tests.golden_runs {method}"
    )


def test_the_clientapp_registers_every_handler_the_registry_names():
    from not_flower.app.client_app import app

    handlers = {
        action: resolve(target)
        for spec in REGISTRY.values()
        for action, target in spec.client_handlers
    }
    assert set(handlers) == {"pgd", "calibrate"} and all(map(callable, handlers.values()))
    registered = app._registered_funcs  # pylint: disable=protected-access
    assert {f"train.{action}" for action in handlers} <= set(registered)


@pytest.mark.parametrize("target", ["no_colon", ":fn", "mod:", ""])
def test_resolve_refuses_what_is_not_module_colon_function(target):
    with pytest.raises(ValueError, match="expected 'module:function'"):
        resolve(target)


def test_the_docs_registry_entry_is_a_valid_method():
    import re
    from pathlib import Path

    from strategies.requirements import Requirements

    page = Path(__file__).resolve().parents[1] / "docs" / "guide" / "adding-a-method.md"
    block = re.search(r"```python\n(\s*Method\(\"x\".*?)```", page.read_text(), re.S)
    assert block, "docs/guide/adding-a-method.md shows no registry entry"
    entry = eval(  # pylint: disable=eval-used
        "\n".join(line.strip() for line in block.group(1).splitlines()),
        {"Method": Method, "Requirements": Requirements},
    )
    assert entry.name == "x" and entry.baseline and entry.client_handlers[0][0] == "x"
    assert tuple(entry.requirements.to_dict()) == (
        "storage",
        "target_data",
        "target_participation",
        "server_data",
    )


def test_set_for_gives_one_method_its_own_keys_and_not_the_shared_original(tmp_path, capsys):
    args = compare.parse_args(
        [
            "--out",
            str(tmp_path),
            "--methods",
            "retrain",
            "not",
            "not-weights-only",
            "--scenarios",
            "backdoor",
            "--seeds",
            "0",
            "--share-original",
            "--set",
            "lr=0.02",
            "--set-for",
            "not-weights-only",
            "recovery.local-epochs=2",
            "--set-for",
            "not",
            "recovery.lr=0.01",
        ]
    )
    runs = {r.method: r.run_config for r in compare.plan_runs(args)}
    assert runs["not-weights-only"]["recovery.local-epochs"] == 2
    assert runs["not-weights-only"]["negate.bias"] is False
    assert runs["not"]["recovery.lr"] == 0.01 and "recovery.local-epochs" not in runs["not"]
    assert "recovery.lr" not in runs["retrain"] and "recovery.local-epochs" not in runs["retrain"]
    # the shared original is no method's: only --set reaches it
    assert runs["original"]["lr"] == 0.02 and "recovery.lr" not in runs["original"]
    assert all(cfg["lr"] == 0.02 for cfg in runs.values())
    for bad, says in (
        (["--set-for", "ft", "lr=0.1"], "'ft' is not among --methods"),
        (["--set-for", "not", "lr"], "expects key=value"),
        (
            ["--set-for", "not-weights-only", "negate.bias=true"],
            "not-weights-only fixes negate.bias=false",
        ),
    ):
        with pytest.raises(SystemExit):
            compare.parse_args(
                [
                    "--out",
                    "unused",
                    "--methods",
                    "not",
                    "not-weights-only",
                    "--scenarios",
                    "iid",
                    *bad,
                ]
            )
        assert says in capsys.readouterr().err


def _recipe_args(tmp_path, *extra):
    return compare.parse_args(
        [
            "--out",
            str(tmp_path),
            "--methods",
            "retrain",
            "retrain-recipe",
            "not",
            "--scenarios",
            "backdoor",
            "--seeds",
            "0",
            "--share-original",
            "--train-rounds",
            "30",
            *extra,
            "--set-for",
            "retrain-recipe",
            "fraction-train=0.5",
            "--set-for",
            "retrain-recipe",
            "local-epochs=2",
        ]
    )


def test_retrain_recipe_runs_as_retrain_with_its_recipe_and_retrain_rounds(tmp_path):
    spec = REGISTRY["retrain-recipe"]
    assert spec.app_method == "retrain" and not spec.recovers and not spec.run_config
    runs = {r.method: r.run_config for r in compare.plan_runs(_recipe_args(tmp_path))}
    # without --retrain-rounds Retrain is as long as the training
    assert runs["retrain"]["num-train-rounds"] == runs["retrain-recipe"]["num-train-rounds"] == 30
    runs = {
        r.method: r.run_config
        for r in compare.plan_runs(_recipe_args(tmp_path, "--retrain-rounds", "80"))
    }
    recipe, plain = runs["retrain-recipe"], runs["retrain"]
    assert recipe["method"] == plain["method"] == "retrain"
    assert recipe["num-train-rounds"] == plain["num-train-rounds"] == 80
    # the original NoT starts from, and NoT itself, keep --train-rounds
    assert runs["original"]["num-train-rounds"] == 30 and runs["not"]["num-train-rounds"] == 0
    assert recipe["fraction-train"] == 0.5 and recipe["local-epochs"] == 2
    assert "fraction-train" not in plain and "local-epochs" not in plain
    # trains from scratch: no shared original, no recovery keys
    assert "init-checkpoint" not in recipe and "recovery.rounds" not in recipe
    assert recipe["out-dir"].endswith("retrain-recipe")
    config.parse_run_config(recipe)
    # a length of its own: only a Retrain variant may set num-train-rounds with --set-for
    args = _recipe_args(
        tmp_path, "--retrain-rounds", "80", "--set-for", "retrain-recipe", "num-train-rounds=50"
    )
    runs = {r.method: r.run_config for r in compare.plan_runs(args)}
    assert runs["retrain-recipe"]["num-train-rounds"] == 50
    assert runs["retrain"]["num-train-rounds"] == 80


def test_only_a_retrain_variant_may_set_its_own_length(capsys):
    with pytest.raises(SystemExit):
        compare.parse_args(
            ["--out", "unused", "--methods", "not", "--set-for", "not", "num-train-rounds=5"]
        )
    assert "use --train-rounds / --retrain-rounds instead" in capsys.readouterr().err


def test_the_retrain_recipe_row_is_compared_with_retrain(tmp_path):
    from tests.test_compare import RETRAIN, record, retrain_results

    runs = []
    for seed in (0, 1):
        runs.append(record("backdoor", seed, "retrain", retrain_results(RETRAIN[seed], rounds=20)))
        half = retrain_results(RETRAIN[seed], rounds=20, down=50_000, up=50_000, secs=10.0)
        runs.append(record("backdoor", seed, "retrain-recipe", half))
    methods = report.summarize_scenario(runs, "backdoor")["methods"]
    assert list(methods)[:2] == ["Retrain", "Retrain same recipe"]
    row = methods["Retrain same recipe"]
    assert row["k"] is None and row["seeds"] == [0, 1]
    assert row["stats"]["avg_gap"]["mean"] == pytest.approx(0.0)
    assert row["stats"]["cost_mb_pct"]["mean"] == pytest.approx(50.0)
    assert row["stats"]["cost_rounds_pct"]["mean"] == pytest.approx(100.0)
    assert report.plot_scenario(runs, "backdoor", tmp_path)  # its curve is drawn too
