"""The comparison command and its report: hand-made results, CLI parsing, one e2e run."""

from __future__ import annotations

import json
import math
from dataclasses import fields

import pytest

from not_flower.common.config import RunConfig, parse_run_config
from not_flower.evaluation.metrics import avg_gap
from not_flower.experiments import compare, report
from not_flower.experiments import runs as compare_runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T = 20  # training rounds of the hand-made runs


# --------------------------------------------------------------------------- #
# hand-made results.json dicts
# --------------------------------------------------------------------------- #
def metrics(retain, forget, test, mia, asr=None, auc=0.5):
    m = {
        "retain_acc": retain,
        "retain_loss": 0.1,
        "forget_acc": forget,
        "forget_loss": 0.2,
        "test_acc": test,
        "test_loss": 0.3,
        "mia_efficacy": mia,
        "mia_loss_auc": auc,
    }
    if asr is not None:
        m["asr"] = asr
    return m


def round_row(r, phase, acc, *, down=1000, up=1000, secs=1.0, forget=None, asr=None):
    row = {
        "round": r,
        "phase": phase,
        "participants": [1, 2],
        "test_acc": acc,
        "test_loss": 1.0,
        "val_acc": acc,
        "bytes_down": down,
        "bytes_up": up,
        "client_seconds": secs,
    }
    if forget is not None:
        row["forget_acc"] = forget
    if asr is not None:
        row["asr"] = asr
    return row


def cost(rounds, down, up, secs):
    return {
        "rounds": rounds,
        "bytes_down": down,
        "bytes_up": up,
        "client_seconds": secs,
        "server_seconds": 0.1,
    }


def retrain_results(final, *, rounds=T, down=100_000, up=100_000, secs=10.0):
    """Retrain: ``rounds`` rounds, each ``down``+``up`` bytes and ``secs`` client-seconds."""
    rows = [round_row(0, "init", 0.1, down=0, up=0, secs=0.0)]
    rows += [
        round_row(r, "retrain", 0.5 + 0.02 * r, down=down, up=up, secs=secs, forget=0.4, asr=0.05)
        for r in range(1, rounds + 1)
    ]
    return {
        "method": "retrain",
        "final": "retrained",
        "models": {"retrained": final},
        "rounds": rows,
        "config": {"recovery.rounds": 15},
        "costs": {
            "train": cost(0, 0, 0, 0.0),
            "unlearning": cost(rounds, down * rounds, up * rounds, secs * rounds),
            "storage_bytes": 0,
        },
        "stopping": {
            "rule": "r",
            "tolerance": 0.02,
            "reference_val_acc": None,
            "chosen_round": None,
            "chosen_recovery_rounds": None,
            "cap": None,
        },
    }


def unlearner_results(
    method, original, at, *, cap=20, stop=None, stopped=None, down=50_000, up=50_000, secs=4.0
):
    """FT/NoT: T training rounds, ``cap`` recovery rounds of known cost, models ``at[K]``."""
    rows = [round_row(0, "init", 0.1, down=0, up=0, secs=0.0)]
    rows += [
        round_row(r, "train", 0.5 + 0.02 * r, down=9, up=9, secs=9.0, forget=0.9, asr=0.9)
        for r in range(1, T + 1)
    ]
    rows += [
        round_row(T + i, "recovery", 0.9, down=down, up=up, secs=secs, forget=0.5, asr=0.1)
        for i in range(1, cap + 1)
    ]
    models = {
        "original": original,
        "recovered": at[max(at)],
        **{f"recovered@{k}": m for k, m in at.items()},
    }
    if method == "not":
        models["negated"] = metrics(0.05, 0.05, 0.05, 0.9, asr=0.0 if "asr" in original else None)
    n_unl = cap if stop is None else stop
    if stop is not None:
        models["stopped"] = stopped
    return {
        "method": method,
        "final": "recovered",
        "models": models,
        "rounds": rows,
        "config": {"recovery.rounds": cap},
        "costs": {
            "train": cost(T, 9 * T, 9 * T, 9.0 * T),
            "unlearning": cost(n_unl, down * n_unl, up * n_unl, secs * n_unl),
            "unlearning_fixed_length": cost(cap, down * cap, up * cap, secs * cap),
            "storage_bytes": 0,
        },
        "stopping": {
            "rule": "val-acc within tolerance",
            "tolerance": 0.02,
            "reference_val_acc": 0.9,
            "chosen_round": None if stop is None else T + stop,
            "chosen_recovery_rounds": stop,
            "cap": cap,
        },
    }


def record(scenario, seed, method, results, status="ok", error=None):
    return {
        "scenario": scenario,
        "seed": seed,
        "method": method,
        "status": status,
        "error": error,
        "path": f"/x/{scenario}/seed{seed}/{method}/results.json",
        "seconds": 1.0,
        "results": results,
    }


RETRAIN = {
    0: metrics(0.90, 0.10, 0.88, 0.50, asr=0.02),
    1: metrics(0.92, 0.12, 0.90, 0.52, asr=0.04),
}
NOT10 = {0: metrics(0.91, 0.12, 0.87, 0.49, asr=0.03), 1: metrics(0.90, 0.10, 0.92, 0.56, asr=0.05)}
NOT20 = {
    0: metrics(0.90, 0.10, 0.88, 0.50, asr=0.02),  # == Retrain: gap 0
    1: metrics(0.93, 0.13, 0.91, 0.53, asr=0.05),
}
FT10 = {s: metrics(0.95, 0.9, 0.9, 0.1, asr=0.8) for s in (0, 1)}
ORIG = {s: metrics(0.96, 0.95, 0.91, 0.05, asr=0.9) for s in (0, 1)}
STOPPED = {0: metrics(0.89, 0.11, 0.87, 0.5, asr=0.03), 1: metrics(0.9, 0.1, 0.9, 0.5, asr=0.04)}


@pytest.fixture()
def runs():
    out = []
    for seed in (0, 1):
        out.append(record("backdoor", seed, "retrain", retrain_results(RETRAIN[seed])))
        out.append(
            record(
                "backdoor",
                seed,
                "ft",
                unlearner_results("ft", ORIG[seed], {10: FT10[seed], 20: FT10[seed]}),
            )
        )
        out.append(
            record(
                "backdoor",
                seed,
                "not",
                unlearner_results(
                    "not",
                    ORIG[seed],
                    {10: NOT10[seed], 20: NOT20[seed]},
                    stop=4 + seed,
                    stopped=STOPPED[seed],
                ),
            )
        )
    return out


# --------------------------------------------------------------------------- #
# report.py
# --------------------------------------------------------------------------- #
def test_mean_std_known_values():
    assert report.mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 3}
    assert report.mean_std([5.0]) == {"mean": 5.0, "std": None, "n": 1}
    assert report.mean_std([]) == {"mean": None, "std": None, "n": 0}
    assert report.mean_std([1.0, None, float("nan"), 3.0]) == {
        "mean": 2.0,
        "std": pytest.approx(math.sqrt(2)),
        "n": 2,
    }


def test_row_labels():
    assert report.row_label("not", 10) == "NoT@10"
    assert report.row_label("ft", "stop") == "FT@stop"
    assert report.row_label("retrain") == "Retrain"
    assert report.row_label("original") == "Original"
    with pytest.raises(ValueError, match="'bogus'"):
        report.row_label("bogus")
    with pytest.raises(ValueError, match="needs k"):
        report.row_label("not")


def test_rows_means_stds_and_gaps_per_seed_against_the_same_seeds_retrain(runs):
    s = report.summarize_scenario(runs, "backdoor")
    assert list(s["methods"]) == [
        "Original",
        "Retrain",
        "FT@10",
        "FT@20",
        "NoT@10",
        "NoT@20",
        "NoT@stop",
    ]
    not10 = s["methods"]["NoT@10"]
    assert not10["seeds"] == [0, 1] and not10["k"] == 10
    st = not10["stats"]
    assert st["retain"]["mean"] == pytest.approx(90.5)
    assert st["retain"]["std"] == pytest.approx(math.sqrt(0.5))  # sample std of 91, 90
    assert st["test"]["mean"] == pytest.approx(89.5)
    assert st["asr"]["mean"] == pytest.approx(4.0)
    # gap per seed vs the SAME seed's Retrain, then mean +- std over seeds
    g0 = (1 + 2 + 1 + 1) / 4  # |91-90|, |12-10|, |87-88|, |49-50|
    g1 = (2 + 2 + 2 + 4) / 4  # |90-92|, |10-12|, |92-90|, |56-52|
    assert not10["per_seed"]["0"]["avg_gap"] == pytest.approx(g0)
    assert not10["per_seed"]["1"]["avg_gap"] == pytest.approx(g1)
    assert st["avg_gap"]["mean"] == pytest.approx((g0 + g1) / 2)
    assert st["avg_gap"]["std"] == pytest.approx(abs(g0 - g1) / math.sqrt(2))
    assert g0 == pytest.approx(avg_gap(NOT10[0], RETRAIN[0]))
    # NoT@20 equals Retrain on seed 0; seed 1 differs by one point everywhere
    assert s["methods"]["NoT@20"]["per_seed"]["0"]["avg_gap"] == pytest.approx(0.0)
    assert s["methods"]["NoT@20"]["per_seed"]["1"]["avg_gap"] == pytest.approx(1.0)
    assert s["methods"]["Retrain"]["stats"]["avg_gap"]["mean"] == pytest.approx(0.0)
    orig = s["methods"]["Original"]
    assert orig["stats"]["asr"]["mean"] == pytest.approx(90.0)
    assert orig["stats"]["rounds"]["mean"] is None  # no unlearning cost


def test_costs_and_cost_shares_of_retrain(runs):
    s = report.summarize_scenario(runs, "backdoor")["methods"]
    rt = s["Retrain"]["stats"]
    assert rt["rounds"]["mean"] == 20
    assert rt["mb"]["mean"] == pytest.approx(4.0)  # 20 * 200_000 bytes
    assert rt["client_seconds"]["mean"] == pytest.approx(200.0)
    assert rt["cost_rounds_pct"]["mean"] == pytest.approx(100.0)
    for label, k in (("NoT@10", 10), ("NoT@20", 20), ("FT@10", 10)):
        st = s[label]["stats"]
        assert st["rounds"]["mean"] == k
        assert st["mb"]["mean"] == pytest.approx(k * 0.1)
        assert st["client_seconds"]["mean"] == pytest.approx(4.0 * k)
        assert st["cost_rounds_pct"]["mean"] == pytest.approx(100 * k / 20)
        assert st["cost_mb_pct"]["mean"] == pytest.approx(100 * k * 0.1 / 4.0)
        assert st["cost_client_seconds_pct"]["mean"] == pytest.approx(100 * 4.0 * k / 200)


def test_stop_row_uses_the_stopped_model_and_the_stopped_cost(runs):
    s = report.summarize_scenario(runs, "backdoor")
    row = s["methods"]["NoT@stop"]
    assert row["per_seed"]["0"]["stopping_round"] == 4
    assert row["per_seed"]["1"]["stopping_round"] == 5
    assert row["stats"]["rounds"]["mean"] == pytest.approx(4.5)
    assert row["per_seed"]["0"]["retain"] == pytest.approx(89.0)
    assert row["per_seed"]["1"]["mb"] == pytest.approx(0.5)
    # the per-K rows are unaffected by the early stop: counted from the round rows
    assert s["methods"]["NoT@10"]["per_seed"]["0"]["rounds"] == 10
    assert set(s["stopping"]) == {"NoT", "FT"}
    assert s["stopping"]["NoT"]["1"]["chosen_recovery_rounds"] == 5


def test_noise_floor_is_the_mean_gap_over_pairs_of_retrain_seeds():
    rts = {
        0: metrics(0.90, 0.10, 0.90, 0.50),
        1: metrics(0.92, 0.10, 0.90, 0.50),
        2: metrics(0.90, 0.14, 0.90, 0.50),
    }
    nf = report.noise_floor({s: retrain_results(m) for s, m in rts.items()})
    gaps = {(0, 1): 0.5, (0, 2): 1.0, (1, 2): 1.5}  # (|dretain| + |dforget|) / 4 in points
    assert [tuple(p["seeds"]) for p in nf["pairs"]] == list(gaps)
    for p in nf["pairs"]:
        assert p["avg_gap"] == pytest.approx(gaps[tuple(p["seeds"])])
    assert nf["mean"] == pytest.approx(1.0) and nf["n"] == 3
    assert nf["std"] == pytest.approx(0.5)
    assert report.noise_floor({0: retrain_results(rts[0])})["mean"] is None


def test_failed_runs_are_skipped_and_listed(runs):
    runs = [r for r in runs if not (r["seed"] == 1 and r["method"] == "retrain")]
    runs.append(record("backdoor", 1, "retrain", None, status="failed", error="RuntimeError: boom"))
    rep = report.build_report(runs, command="python -m not_flower.experiments.compare --out x")
    s = rep["scenarios"]["backdoor"]
    assert rep["failed"] == 1
    assert s["methods"]["Retrain"]["seeds"] == [0]
    # without seed 1's Retrain, seed 1 has no gap and no cost share, but its metrics count
    assert s["methods"]["NoT@10"]["stats"]["avg_gap"]["n"] == 1
    assert s["methods"]["NoT@10"]["stats"]["retain"]["n"] == 2
    md = report.render_markdown(rep)
    assert "seed 1 retrain: RuntimeError: boom" in md
    assert "needs Retrain runs of at least two seeds" in md


def test_markdown_table_layout(runs):
    rep = report.build_report(
        runs, command="python -m not_flower.experiments.compare --out /tmp/x --seeds 0 1"
    )
    md = report.render_markdown(rep)
    assert "python -m not_flower.experiments.compare --out /tmp/x --seeds 0 1" in md
    lines = md.splitlines()
    header = (
        "| method | retain | forget | test | MIA | ASR | Avg Gap | rounds | MB | "
        "client-s | cost vs Retrain |"
    )
    assert header in lines
    row = next(line for line in lines if line.startswith("| NoT@10 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 11
    assert cells[1] == "90.50 ± 0.71"  # retain: mean ± sample std, two decimals
    assert cells[5] == "4.00 ± 1.41"  # ASR
    assert cells[7] == "10"  # rounds, identical over seeds
    assert cells[8] == "1.00 ± 0.00"  # MB
    assert cells[10] == "50% / 25% / 20%"
    orig = next(line for line in lines if line.startswith("| Original |"))
    assert orig.rstrip().endswith("| – | – | – | – |")
    assert any(line.startswith("Retrain vs Retrain (seed noise): Avg Gap ") for line in lines)
    assert "Stopping rule for NoT" in md and "seed 0: 4, seed 1: 5" in md


def test_single_seed_cells_have_no_std_and_iid_has_no_asr():
    runs = [
        record("iid", 0, "retrain", retrain_results(metrics(0.9, 0.9, 0.9, 0.5))),
        record(
            "iid",
            0,
            "not",
            unlearner_results(
                "not", metrics(0.95, 0.95, 0.9, 0.4), {10: metrics(0.91, 0.9, 0.9, 0.5)}, cap=10
            ),
        ),
    ]
    rep = report.build_report(runs)
    row = next(
        line for line in report.render_markdown(rep).splitlines() if line.startswith("| NoT@10 |")
    )
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "91.00" and cells[5] == "–" and cells[6] == "0.25"


def test_results_without_per_k_metrics_fall_back_to_the_final_model():
    res = unlearner_results(
        "not", metrics(0.9, 0.9, 0.9, 0.5), {10: metrics(0.8, 0.8, 0.8, 0.5)}, cap=10
    )
    del res["models"]["recovered@10"]
    row = report.seed_row(res, None, 10)
    assert row["retain"] == pytest.approx(80.0) and row["rounds"] == 10
    assert report.seed_row(res, None, 5) is None  # no model after 5 rounds recorded


def test_round_series_aligns_rounds_over_seeds():
    a = {"rounds": [{"round": 1, "test_acc": 0.5}, {"round": 2, "test_acc": 0.7}]}
    b = {"rounds": [{"round": 1, "test_acc": 0.7}, {"round": 3, "test_acc": 0.9}]}
    x, mean, std = report.round_series({0: a, 1: b}, "test_acc")
    assert x.tolist() == [1, 2, 3]
    assert mean.tolist() == pytest.approx([60.0, 70.0, 90.0])
    assert std.tolist() == pytest.approx([math.sqrt(200), 0.0, 0.0])


def test_plots_are_written(runs, tmp_path):
    paths = report.plot_scenario(runs, "backdoor", tmp_path)
    names = sorted(p.name for p in paths)
    assert names == ["backdoor-asr.png", "backdoor-forget-acc.png", "backdoor-test-acc.png"]
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_no_asr_plot_without_asr(tmp_path):
    res = retrain_results(metrics(0.9, 0.9, 0.9, 0.5))
    for row in res["rounds"]:
        row.pop("asr", None)
    paths = report.plot_scenario([record("iid", 0, "retrain", res)], "iid", tmp_path)
    assert sorted(p.name for p in paths) == ["iid-forget-acc.png", "iid-test-acc.png"]


def test_write_report_writes_json_md_and_plots(runs, tmp_path):
    runs[0]["results"]["models"]["retrained"]["mia_loss_auc"] = float("nan")
    rep = report.write_report(runs, tmp_path, command="cmd", settings={"seeds": [0, 1]}, ks=[10])
    on_disk = json.loads((tmp_path / "report.json").read_text())  # strict JSON: NaN -> null
    assert on_disk["settings"] == {"seeds": [0, 1]}
    assert list(on_disk["scenarios"]["backdoor"]["methods"]) == [
        "Original",
        "Retrain",
        "FT@10",
        "NoT@10",
        "NoT@stop",
    ]
    assert (
        on_disk["scenarios"]["backdoor"]["methods"]["Retrain"]["per_seed"]["0"]["mia_loss_auc"]
        is None
    )
    assert "results" not in on_disk["runs"][0]
    assert rep["plots"]["backdoor"] == on_disk["plots"]["backdoor"]
    md = (tmp_path / "report.md").read_text()
    assert "## backdoor" in md and "![backdoor-asr.png](backdoor-asr.png)" in md
    for name in on_disk["plots"]["backdoor"]:
        assert (tmp_path / name).stat().st_size > 0


# --------------------------------------------------------------------------- #
# compare.py: arguments and planning
# --------------------------------------------------------------------------- #
def test_defaults(tmp_path):
    args = compare.parse_args(["--out", str(tmp_path)])
    assert args.seeds == [0, 1, 2]
    assert args.scenarios == ["iid", "dirichlet", "backdoor"]
    assert args.methods == ["retrain", "ft", "not"]
    assert (args.num_clients, args.target, args.train_rounds) == (10, 0, 20)
    assert args.recovery_rounds == [10, 20] and args.alpha == 0.1
    assert args.overrides == {} and not args.resume


def test_bad_scenario_is_an_argparse_error_naming_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        compare.parse_args(["--out", str(tmp_path), "--scenarios", "iid", "noniid"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "noniid" in err and "--scenarios" in err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--methods", "fedEraser"], "fedEraser"),
        (["--seeds", "-1"], "must be >= 0"),
        (["--recovery-rounds", "0"], "must be >= 1"),
        (["--num-clients", "3", "--target", "3"], "--target 3"),
        (["--alpha", "0"], "> 0"),
        (["--set", "lr"], "key=value"),
        (["--set", "learning-rate=0.1"], "'learning-rate'"),
        (["--set", "seed=3"], "--seeds"),
        (["--set", "out-dir=/x"], "--out"),
    ],
)
def test_bad_arguments(tmp_path, capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        compare.parse_args(["--out", str(tmp_path), *argv])
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_out_is_required(capsys):
    with pytest.raises(SystemExit):
        compare.parse_args([])
    assert "--out" in capsys.readouterr().err


def test_set_values_are_typed():
    assert compare.parse_set(
        [
            "lr=0.02",
            "local-epochs=3",
            "negate.bias=false",
            "negate.layers=conv1",
            "backdoor.target=2",
            "negate.bias=True",
        ]
    ) == {
        "lr": 0.02,
        "local-epochs": 3,
        "negate.bias": True,
        "negate.layers": "conv1",
        "backdoor.target": 2,
    }
    assert compare.parse_value("1e-3") == pytest.approx(0.001)
    assert compare.parse_value("0,3") == "0,3"
    assert isinstance(compare.parse_value("5"), int)


def test_lists_are_deduplicated_and_ordered(tmp_path):
    args = compare.parse_args(
        [
            "--out",
            str(tmp_path),
            "--seeds",
            "2",
            "0",
            "2",
            "--methods",
            "not",
            "retrain",
            "--recovery-rounds",
            "20",
            "5",
            "20",
            "--scenarios",
            "backdoor",
            "iid",
            "backdoor",
        ]
    )
    assert args.seeds == [2, 0] and args.methods == ["retrain", "not"]
    assert args.recovery_rounds == [5, 20] and args.scenarios == ["backdoor", "iid"]
    assert args.out.is_absolute()


def test_run_configs_per_scenario_and_method(tmp_path):
    args = compare.parse_args(
        [
            "--out",
            str(tmp_path),
            "--seeds",
            "3",
            "--target",
            "2",
            "--train-rounds",
            "7",
            "--recovery-rounds",
            "4",
            "2",
            "--alpha",
            "0.3",
            "--set",
            "lr=0.05",
            "--set",
            "backdoor.fraction=0.5",
        ]
    )
    specs = compare.plan_runs(args)
    assert len(specs) == 9
    by = {(s.scenario, s.method): s.run_config for s in specs}
    nt = by[("backdoor", "not")]
    assert nt["out-dir"] == str(tmp_path / "runs" / "backdoor" / "seed3" / "not")
    assert nt["method"] == "not" and nt["seed"] == 3 and nt["unlearn.clients"] == "2"
    assert nt["num-train-rounds"] == 7
    assert nt["recovery.rounds"] == 4 and nt["eval-recovery-rounds"] == "2,4"
    assert nt["backdoor.clients"] == "2" and nt["backdoor.target"] == 0
    assert nt["backdoor.fraction"] == 0.5 and nt["lr"] == 0.05  # --set wins over the scenario
    rt = by[("backdoor", "retrain")]
    assert rt["method"] == "retrain" and rt["num-train-rounds"] == 7
    assert "eval-recovery-rounds" not in rt
    assert by[("dirichlet", "ft")]["partitioner"] == "dirichlet"
    assert by[("dirichlet", "ft")]["dirichlet-alpha"] == 0.3
    assert by[("iid", "ft")]["partitioner"] == "iid" and "backdoor.clients" not in by[("iid", "ft")]
    if "method" in {f.name for f in fields(RunConfig)}:
        for spec in specs:  # every planned config is valid for the app
            parse_run_config(spec.run_config)


def test_config_mismatch_detects_a_changed_setting(tmp_path):
    if "method" not in {f.name for f in fields(RunConfig)}:
        pytest.skip("the app has no 'method' run-config key yet")
    from not_flower.common.config import to_run_config

    args = compare.parse_args(
        ["--out", str(tmp_path), "--seeds", "0", "--scenarios", "iid", "--methods", "not"]
    )
    cfg = compare.plan_runs(args)[0].run_config
    stored = {"config": to_run_config(parse_run_config(cfg)), "num_partitions": 10}
    assert compare.config_mismatch(cfg, stored, 10) is None
    assert "clients" in compare.config_mismatch(cfg, stored, 5)
    assert "num-train-rounds" in compare.config_mismatch({**cfg, "num-train-rounds": 3}, stored)


# --------------------------------------------------------------------------- #
# compare.main with a fake simulation: progress, failures, resume
# --------------------------------------------------------------------------- #
def _fake_run(spec, args):
    if spec.seed == 1 and spec.method == "ft":
        raise RuntimeError("ServerApp crashed")
    seed = spec.seed
    if spec.method == "retrain":
        res = retrain_results(RETRAIN[seed], rounds=args.train_rounds)
    else:
        at = {k: (NOT10 if spec.method == "not" else FT10)[seed] for k in args.recovery_rounds}
        res = unlearner_results(spec.method, ORIG[seed], at, cap=max(args.recovery_rounds))
    from not_flower.common.config import to_run_config

    res["config"] = to_run_config(parse_run_config(spec.run_config))
    res["num_partitions"] = args.num_clients
    spec.folder.mkdir(parents=True, exist_ok=True)
    (spec.folder / "results.json").write_text(json.dumps(res))
    return res


@pytest.fixture()
def fake_sim(monkeypatch):
    if "method" not in {f.name for f in fields(RunConfig)}:
        pytest.skip("the app has no 'method' run-config key yet")
    calls = []

    def run(spec, args):
        calls.append(spec.name)
        return _fake_run(spec, args)

    monkeypatch.setattr(compare_runs, "_run_one", run)
    return calls


def test_main_reports_a_failed_run_continues_and_exits_nonzero(tmp_path, fake_sim, capsys):
    argv = [
        "--out",
        str(tmp_path),
        "--seeds",
        "0",
        "1",
        "--scenarios",
        "backdoor",
        "--train-rounds",
        "20",
        "--recovery-rounds",
        "10",
    ]
    assert compare.main(argv) == 1
    assert len(fake_sim) == 6  # went on after the failure
    captured = capsys.readouterr()
    assert "[FAILED] backdoor seed1 FT: RuntimeError: ServerApp crashed" in captured.out
    assert "[ok] backdoor seed0 NoT: test 87.0" in captured.out
    assert "1 of 6 run(s) failed" in captured.err
    rep = json.loads((tmp_path / "report.json").read_text())
    failed = [r for r in rep["runs"] if r["status"] == "failed"]
    assert [(r["seed"], r["method"]) for r in failed] == [(1, "ft")]
    assert rep["command"].startswith("python -m not_flower.experiments.compare --out ")
    methods = rep["scenarios"]["backdoor"]["methods"]
    assert methods["FT@10"]["seeds"] == [0] and methods["NoT@10"]["seeds"] == [0, 1]
    assert (tmp_path / "report.md").is_file() and (tmp_path / "backdoor-asr.png").is_file()

    # --resume: only the failed run (and none of the stored ones) runs again
    fake_sim.clear()
    assert compare.main([*argv, "--resume"]) == 1
    assert fake_sim == ["backdoor seed1 FT"]
    assert "[resumed] backdoor seed0 Retrain" in capsys.readouterr().out

    # a changed setting makes --resume rerun instead of reusing a stale result
    fake_sim.clear()
    compare.main([*argv[:-1], "12", "--resume", "--methods", "not"])
    assert fake_sim == ["backdoor seed0 NoT", "backdoor seed1 NoT"]
    assert "eval-recovery-rounds differs" in capsys.readouterr().out


def test_main_rejects_an_invalid_run_config_before_running(tmp_path, fake_sim, capsys):
    with pytest.raises(SystemExit) as exc:
        compare.main(["--out", str(tmp_path), "--seeds", "0", "--set", "model=transformer"])
    assert exc.value.code == 2
    assert "transformer" in capsys.readouterr().err
    assert fake_sim == []


# --------------------------------------------------------------------------- #
# end to end through Flower's simulation engine
# --------------------------------------------------------------------------- #
@pytest.mark.e2e
def test_end_to_end_backdoor_reduced(tmp_path, capsys):
    if "method" not in {f.name for f in fields(RunConfig)}:
        pytest.skip("the app has no 'method' run-config key yet (method = not | ft | retrain)")
    out = tmp_path / "cmp"
    rc = compare.main(
        [
            "--out",
            str(out),
            "--seeds",
            "0",
            "--scenarios",
            "backdoor",
            "--methods",
            "retrain",
            "ft",
            "not",
            "--num-clients",
            "3",
            "--train-rounds",
            "3",
            "--recovery-rounds",
            "2",
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert printed.count("[ok] backdoor seed0") == 3
    for name in (
        "report.json",
        "report.md",
        "backdoor-test-acc.png",
        "backdoor-forget-acc.png",
        "backdoor-asr.png",
    ):
        assert (out / name).stat().st_size > 0, name
    rep = json.loads((out / "report.json").read_text())
    assert rep["failed"] == 0
    s = rep["scenarios"]["backdoor"]
    rows = s["methods"]
    assert {"Original", "Retrain", "FT@2", "NoT@2"} <= set(rows)

    # Retrain never trained on the target's (forget) data
    retrain = json.loads(
        (out / "runs" / "backdoor" / "seed0" / "retrain" / "results.json").read_text()
    )
    assert retrain["method"] == "retrain"
    trained = [r for r in retrain["rounds"] if r["phase"] != "init"]
    assert len(trained) == 3 and all(0 not in r["participants"] for r in trained)
    assert all(r["participants"] == [1, 2] for r in trained)

    def stat(label, key):
        return rows[label]["stats"][key]["mean"]

    assert stat("Retrain", "rounds") == 3 and stat("NoT@2", "rounds") == 2
    assert stat("FT@2", "rounds") == 2
    for label in ("Retrain", "FT@2", "NoT@2"):
        assert stat(label, "mb") > 0 and stat(label, "client_seconds") > 0
    assert stat("NoT@2", "cost_rounds_pct") == pytest.approx(100 * 2 / 3)
    assert 0 < stat("NoT@2", "cost_mb_pct") < 100
    assert stat("Retrain", "avg_gap") == pytest.approx(0.0)
    for label, row in rows.items():
        for key in ("retain", "forget", "test", "mia", "asr"):
            assert 0.0 <= row["stats"][key]["mean"] <= 100.0, (label, key)
    # the poisoner's backdoor is in the original model, not in Retrain
    assert stat("Original", "asr") > stat("Retrain", "asr")
    md = (out / "report.md").read_text()
    assert "| NoT@2 |" in md and "| Retrain |" in md


@pytest.mark.e2e
def test_end_to_end_share_original_trains_once(tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = compare.main(
        [
            "--out",
            str(out),
            "--seeds",
            "0",
            "--scenarios",
            "backdoor",
            "--methods",
            "ft",
            "not",
            "--num-clients",
            "3",
            "--train-rounds",
            "3",
            "--recovery-rounds",
            "2",
            "--share-original",
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "[ok] backdoor seed0 Original" in printed and printed.count("[ok] backdoor seed0") == 3
    seed = out / "runs" / "backdoor" / "seed0"
    original = json.loads((seed / "original" / "results.json").read_text())
    assert len([r for r in original["rounds"] if r["phase"] == "train"]) == 3
    trained = original["models"][original["final"]]
    for method in ("ft", "not"):
        res = json.loads((seed / method / "results.json").read_text())
        assert res["config"]["init-checkpoint"] == str(seed / "original" / "checkpoint-final.pt")
        assert res["costs"]["train"]["rounds"] == 0  # no training of its own
        assert not [r for r in res["rounds"] if r["phase"] == "train"]
        assert res["models"]["original"]["test_acc"] == pytest.approx(trained["test_acc"])
        assert res["models"]["original"]["asr"] == pytest.approx(trained["asr"])
    rep = json.loads((out / "report.json").read_text())
    rows = rep["scenarios"]["backdoor"]["methods"]
    assert {"Original", "FT@2", "NoT@2"} <= set(rows)
    assert rows["Original"]["stats"]["test"]["mean"] == pytest.approx(100 * trained["test_acc"])


# --------------------------------------------------------------------------- #
# partial forgetting scenarios (class, instance)
# --------------------------------------------------------------------------- #
def test_partial_scenarios_plan_their_own_requests_and_retrain(tmp_path):
    args = compare.parse_args(
        [
            "--out",
            str(tmp_path),
            "--seeds",
            "1",
            "--target",
            "2",
            "--scenarios",
            "class",
            "instance",
            "--forget-classes",
            "7",
            "3",
        ]
    )
    by = {(s.scenario, s.method): s.run_config for s in compare.plan_runs(args)}
    assert len(by) == 6
    for method in ("retrain", "ft", "not"):
        cls = by[("class", method)]
        assert (cls["unlearn.mode"], cls["unlearn.classes"], cls["unlearn.clients"]) == (
            "class",
            "3,7",
            "*",
        )  # federation-wide by default
        assert "backdoor.clients" not in cls
        inst = by[("instance", method)]
        assert (inst["unlearn.mode"], inst["unlearn.samples"], inst["unlearn.clients"]) == (
            "instance",
            "poisoned",
            "2",
        )
        assert inst["backdoor.clients"] == "2" and inst["backdoor.fraction"] == 0.4
        for cfg in (cls, inst):  # Retrain leaves out exactly the same data (from round 1)
            parsed = parse_run_config(cfg)
            assert parsed.method == method
            assert parsed.request_round(0) == (1 if method == "retrain" else 21)
    one = compare.parse_args(
        ["--out", str(tmp_path), "--scenarios", "class", "--class-scope", "client", "--target", "4"]
    )
    assert compare.plan_runs(one)[0].run_config["unlearn.clients"] == "4"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--scenarios", "class", "--methods", "not", "pgd"], "forget whole clients only"),
        (["--scenarios", "instance", "--methods", "fukd"], "instance"),
        (["--scenarios", "class", "--class-scope", "half"], "half"),
        (["--forget-classes", "-2"], "must be >= 0"),
        (["--set", "unlearn.mode=class"], "--scenarios class / instance"),
        (["--set", "unlearn.classes=3"], "--forget-classes"),
    ],
)
def test_bad_partial_arguments(tmp_path, capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        compare.parse_args(["--out", str(tmp_path), *argv])
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def _with_classes(m, forgotten, other):
    return {**m, "forgotten_classes_test_acc": forgotten, "other_classes_test_acc": other}


def test_class_scenario_table_adds_forgotten_and_other_class_columns():
    runs = []
    for seed in (0, 1):
        runs.append(
            record(
                "class", seed, "retrain", retrain_results(_with_classes(RETRAIN[seed], 0.0, 0.97))
            )
        )
        at = {
            10: _with_classes(NOT10[seed], 0.02 * seed, 0.96),
            20: _with_classes(NOT20[seed], 0.0, 0.98),
        }
        runs.append(
            record(
                "class",
                seed,
                "not",
                unlearner_results("not", _with_classes(ORIG[seed], 0.97, 0.97), at),
            )
        )
    rep = report.build_report(runs)
    summary = rep["scenarios"]["class"]
    st = summary["methods"]["NoT@10"]["stats"]
    assert st["forgotten_classes"]["mean"] == pytest.approx(1.0)  # (0 + 2) / 2 points
    assert st["other_classes"]["mean"] == pytest.approx(96.0)
    assert summary["methods"]["Retrain"]["stats"]["forgotten_classes"]["mean"] == 0.0
    lines = report.render_table(summary)
    assert lines[0].endswith(
        "| cost vs Retrain | forgotten classes (test) | other classes (test) |"
    )
    row = next(line for line in lines if line.startswith("| NoT@10 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 13 and cells[-2] == "1.00 ± 1.41" and cells[-1] == "96.00 ± 0.00"
    md = report.render_markdown(rep)
    assert "Class-wise: the forgotten class(es) are removed" in md
    # a client-wise scenario keeps its 11 columns
    assert (
        len(
            report.render_table(
                report.summarize_scenario(
                    [record("iid", 0, "retrain", retrain_results(RETRAIN[0]))], "iid"
                )
            )[0].split("|")
        )
        == 13
    )


# --------------------------------------------------------------------------- share-original
def test_share_original_plans_one_original_and_starts_not_and_ft_from_it(tmp_path):
    args = compare.parse_args(
        [
            "--out",
            str(tmp_path),
            "--seeds",
            "0",
            "1",
            "--scenarios",
            "backdoor",
            "--methods",
            "retrain",
            "ft",
            "not",
            "pgd",
            "--train-rounds",
            "7",
            "--recovery-rounds",
            "3",
            "--share-original",
        ]
    )
    specs = compare.plan_runs(args)
    assert [s.method for s in specs] == ["original", "retrain", "ft", "not", "pgd"] * 2
    original = specs[0]
    assert original.name == "backdoor seed0 Original"
    assert (
        original.run_config["unlearn.clients"] == "" and original.run_config["recovery.rounds"] == 0
    )
    assert original.run_config["num-train-rounds"] == 7
    assert original.folder == tmp_path / "runs" / "backdoor" / "seed0" / "original"
    ckpt = str(original.folder / "checkpoint-final.pt")
    by = {s.method: s.run_config for s in specs[:5]}
    for method in ("ft", "not"):
        assert by[method]["init-checkpoint"] == ckpt and by[method]["num-train-rounds"] == 0
    for method in ("retrain", "pgd"):  # Retrain from scratch; PGD keeps the clients' models
        assert "init-checkpoint" not in by[method] and by[method]["num-train-rounds"] == 7
    assert specs[5].run_config["seed"] == 1 and specs[7].run_config["init-checkpoint"].endswith(
        "seed1/original/checkpoint-final.pt"
    )
    plain = compare.plan_runs(compare.parse_args(["--out", str(tmp_path), "--scenarios", "iid"]))
    assert "original" not in [s.method for s in plain]
    assert all("init-checkpoint" not in s.run_config for s in plain)


def test_share_original_with_only_retrain_plans_no_original(tmp_path):
    args = compare.parse_args(
        [
            "--out",
            str(tmp_path),
            "--seeds",
            "0",
            "--scenarios",
            "iid",
            "--methods",
            "retrain",
            "--share-original",
        ]
    )
    assert [s.method for s in compare.plan_runs(args)] == ["retrain"]


def test_share_original_refuses_an_init_checkpoint_of_its_own(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        compare.parse_args(
            ["--out", str(tmp_path), "--share-original", "--set", "init-checkpoint=/tmp/x.pt"]
        )
    assert exc.value.code == 2
    assert "--share-original sets init-checkpoint itself" in capsys.readouterr().err


def test_main_with_share_original_runs_the_original_first_and_reports_methods_only(
    tmp_path, fake_sim
):
    argv = [
        "--out",
        str(tmp_path),
        "--seeds",
        "0",
        "--scenarios",
        "backdoor",
        "--train-rounds",
        "20",
        "--recovery-rounds",
        "10",
        "--share-original",
    ]
    compare.main(argv)
    assert fake_sim[0] == "backdoor seed0 Original" and len(fake_sim) == 4
    rep = json.loads((tmp_path / "report.json").read_text())
    assert sorted(r["method"] for r in rep["runs"]) == ["ft", "not", "retrain"]


def test_with_shared_training_puts_the_original_training_in_front_of_the_curves():
    def row(r, phase, acc):
        return {"round": r, "phase": phase, "test_acc": acc}

    original = {"rounds": [row(0, "init", 0.1), row(1, "train", 0.5), row(2, "train", 0.8)]}
    ft = {
        "config": {"init-checkpoint": "runs/x/original/checkpoint-final.pt"},
        "costs": {"train": {"rounds": 0}},
        "rounds": [row(0, "init", 0.8), row(1, "recovery", 0.85), row(2, "recovery", 0.9)],
    }
    retrain = {"config": {"init-checkpoint": ""}, "rounds": [row(0, "init", 0.1)]}
    records = [
        {"scenario": "iid", "seed": 0, "method": m, "results": r}
        for m, r in (("original", original), ("retrain", retrain), ("ft", ft))
    ]
    out = compare_runs.with_shared_training(records)
    assert [r["method"] for r in out] == ["retrain", "ft"]
    assert out[0]["results"] is retrain  # trained itself: untouched
    rounds = out[1]["results"]["rounds"]
    assert [(r["round"], r["phase"]) for r in rounds] == [
        (0, "init"),
        (1, "train"),
        (2, "train"),
        (3, "recovery"),
        (4, "recovery"),
    ]
    assert [r["test_acc"] for r in rounds] == [0.1, 0.5, 0.8, 0.85, 0.9]
    assert out[1]["results"]["costs"] == ft["costs"] and ft["rounds"][1]["round"] == 1


def test_backdoor_dirichlet_plants_the_backdoor_on_a_label_skewed_partition(tmp_path):
    """The Dirichlet partition and the backdoor combine in one scenario, with --alpha."""
    args = compare.parse_args(
        [
            "--out",
            str(tmp_path),
            "--seeds",
            "1",
            "--scenarios",
            "backdoor-dirichlet",
            "--methods",
            "retrain",
            "not",
            "--alpha",
            "0.1",
        ]
    )
    by = {s.method: s.run_config for s in compare.plan_runs(args)}
    for method in ("retrain", "not"):
        cfg = by[method]
        assert cfg["partitioner"] == "dirichlet" and cfg["dirichlet-alpha"] == 0.1
        assert cfg["backdoor.clients"] == "0" and cfg["backdoor.fraction"] == 0.4
        assert cfg["unlearn.clients"] == "0"
        assert parse_run_config(cfg).partitioner == "dirichlet"
    assert "backdoor-dirichlet" in report.SCENARIO_TEXT
