"""The benchmark scripts' own logic: the GPU command's checks and the recovery table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import faster_recovery  # noqa: E402  (benchmarks/ is not a package)
import gpu  # noqa: E402


def test_gpu_benchmark_names_the_missing_data_and_how_to_get_it(tmp_path, capsys):
    assert gpu.main(["--out", str(tmp_path / "o"), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"Fashion-MNIST not found in {tmp_path}" in err
    assert "cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/" in err


def test_gpu_benchmark_refuses_a_bad_budget_and_the_cpu(tmp_path, capsys):
    for name in gpu.FILES:
        (tmp_path / name).write_bytes(b"")
    assert (
        gpu.main(["--out", str(tmp_path / "o"), "--data-dir", str(tmp_path), "--budget-s", "0"])
        == 2
    )
    assert "--budget-s must be > 0, got 0.0" in capsys.readouterr().err
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert gpu.main(["--out", str(tmp_path / "o"), "--data-dir", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_gpu_benchmark_settings_exist_and_runs_are_sized_for_fashion_mnist(tmp_path):
    assert set(gpu.SETTINGS) <= set(faster_recovery.SETTINGS)
    cfg = gpu.base_config("vit", tmp_path, 12000)
    assert cfg["dataset"] == "fashion-mnist" and cfg["data-dir"] == str(tmp_path)
    assert cfg["backdoor.trigger-size"] == 4


def _row(setting, seed, rounds, mb, cpu, reached=True):
    return {
        "setting": setting,
        "seed": seed,
        "reached": reached,
        "rounds": rounds,
        "MB": mb,
        "client_s": cpu,
        "epoch_rounds": rounds,
        "strict_reached": reached,
        "strict_rounds": rounds,
        "test": 80.0,
        "forget": 50.0,
        "asr": 2.0,
    }


def test_recovery_table_gives_costs_as_shares_of_retrain():
    rows = [
        _row("retrain", 0, 20, 200.0, 100.0),
        _row("paper", 0, 10, 50.0, 40.0),
        _row("ft", 0, None, None, None, reached=False),
    ]
    lines = faster_recovery.table(rows, 20, 30, {"local-epochs": 1})
    assert "Retrain (from scratch, 30 rounds; final numbers)" in lines[2]
    paper = lines[3].split(" | ")
    # rounds 50 %, client compute 50 %, MB 25 %, client CPU-s 40 %
    assert paper[3] == "50 %" and paper[4] == "50 %" and paper[6] == "25 %" and paper[7] == "40 %"
    assert "0/1" in lines[4] and "not reached" in lines[4]


def test_run_seed_starts_no_setting_after_the_deadline(tmp_path, monkeypatch, capsys):
    def fake(config, folder):
        rows = [
            {
                "round": 1,
                "phase": "retrain" if config.get("method") == "retrain" else "recovery",
                "test_acc": 0.8,
                "forget_acc": 0.5,
                "asr": 0.02,
                "bytes_down": 1,
                "bytes_up": 1,
                "client_seconds": 1.0,
            }
        ]
        final = {"test_acc": 0.8, "forget_acc": 0.5, "asr": 0.02}
        return {
            "rounds": rows,
            "config": {"local-epochs": 1},
            "models": {"retrained": final, "trained": final},
            "final": "trained",
        }

    monkeypatch.setattr(faster_recovery, "_run", fake)
    rows = faster_recovery.run_seed(tmp_path, 0, ["paper", "ft"], 5, {}, 3, deadline=0.0)
    assert [r["setting"] for r in rows] == ["retrain"]
    assert "time budget spent, not started: paper, ft" in capsys.readouterr().out


def test_client_compute_counts_epochs_times_samples_trained_up_to_the_goal():
    rounds = [
        {"round": 1, "phase": "train", "trained_examples": {"0": 99}},
        {"round": 2, "phase": "recovery", "trained_examples": {"1": 40, "2": 40}},
        {"round": 3, "phase": "recovery", "trained_examples": {"3": 40}},
        {"round": 4, "phase": "recovery", "trained_examples": {"1": 40}},
    ]
    assert faster_recovery.epoch_samples(rounds, "recovery", 3, 2) == 2 * 120
    assert faster_recovery.epoch_samples(rounds, "recovery", 4, 1) == 160
    rounds[2]["trained_examples"] = {}
    assert faster_recovery.epoch_samples(rounds, "recovery", 4, 1) is None


def test_a_retrain_variant_trains_from_scratch_and_is_measured_against_retrain(
    tmp_path, monkeypatch
):
    seen = {}

    def fake(config, folder):
        seen[folder.name] = config
        phase = (
            "retrain"
            if config.get("method") == "retrain"
            else ("train" if config.get("recovery.rounds") == 0 else "recovery")
        )
        test = {"retrain": [0.5, 0.8], "retrain-local-epochs-2": [0.795, 0.81]}.get(
            folder.name, [0.8]
        )
        rows = [
            {
                "round": i + 1,
                "phase": phase,
                "test_acc": t,
                "forget_acc": 0.5,
                "asr": 0.02,
                "bytes_down": 1,
                "bytes_up": 1,
                "client_seconds": 1.0,
                "trained_examples": {"1": 10, "2": 10},
            }
            for i, t in enumerate(test)
        ]
        final = {"test_acc": 0.8, "forget_acc": 0.5, "asr": 0.02}
        return {
            "rounds": rows,
            "config": {"local-epochs": config.get("local-epochs", 1)},
            "models": {"retrained": final, "trained": final},
            "final": "trained",
        }

    monkeypatch.setattr(faster_recovery, "_run", fake)
    rows = faster_recovery.run_seed(
        tmp_path, 0, ["retrain-local-epochs-2"], 5, {"local-epochs": 1}, 3
    )
    variant = seen["retrain-local-epochs-2"]
    assert variant["method"] == "retrain" and variant["local-epochs"] == 2
    assert "init-checkpoint" not in variant and variant["num-train-rounds"] == 3
    retrain, two = rows
    assert (retrain["rounds"], retrain["epoch_samples"]) == (2, 40)
    # reached Retrain's final level (0.80 within 1 point) in its first round, 2 epochs x 20
    assert (two["rounds"], two["epoch_samples"], two["epoch_rounds"]) == (1, 40, 2)
    assert two["test"] == pytest.approx(81.0)
    assert two["curve"]["compute"] == [40, 80] and retrain["curve"]["compute"] == [20, 40]
    png = tmp_path / "curves.png"
    faster_recovery.plot(rows, png, "digits")  # with a third panel: test acc per compute
    assert png.stat().st_size > 10_000


def test_lira_checkpoint_table_has_noise_floor_and_sanity_line():
    import lira_checkpoints

    def m(auc, tpr):
        return {
            "lira_auc": auc,
            "lira_tpr_fpr1": tpr,
            "lira_tpr_fpr01": 0.0,
            "lira_retain_tpr_fpr1": 0.01,
        }

    per_seed = {
        "seed0": {
            "original": m(0.6, 0.10),
            "retrain": m(0.5, 0.02),
            "paper": m(0.52, 0.03),
            "_reference_train_seconds": 1.0,
        },
        "seed1": {"original": m(0.62, 0.08), "retrain": m(0.54, 0.01)},
    }
    lines = lira_checkpoints.table(per_seed)
    assert lines[2].startswith("| original | 2 | 61.00 ± 1.41 | 9.00 ± 1.41 |")
    assert lines[3].startswith("| retrain | 2 | 52.00 ± 2.83 |")
    assert lines[4].startswith("| paper | 1 | 52.00 ± 0.00 | 3.00 ± 0.00 |")
    assert "|LiRA AUC difference| 4.00 ± 0.00" in lines[6]
    assert "LiRA separates Original from Retrain" in lines[8]
    per_seed["seed1"]["original"] = m(0.62, 0.02)
    assert "does NOT separate" in lira_checkpoints.table(per_seed)[-1]


def _write_run(folder, method, rounds, final=None):
    folder.mkdir(parents=True)
    res = {"method": method, "rounds": rounds, "costs": {"storage_bytes": 0}}
    if final is not None:
        res["models"] = {"retrained": final}
    (folder / "results.json").write_text(__import__("json").dumps(res))


def _rounds(phase, tests, mb=10.0, cpu=2.0):
    return [
        {
            "round": i + 1,
            "phase": phase,
            "test_acc": t,
            "forget_acc": 0.5,
            "asr": 0.02,
            "bytes_down": mb * 1e6 / 2,
            "bytes_up": mb * 1e6 / 2,
            "client_seconds": cpu,
        }
        for i, t in enumerate(tests)
    ]


def test_cost_to_forget_skips_the_shared_original_and_gives_shares_per_seed(tmp_path):
    import cost_to_forget

    final = {"test_acc": 0.80, "forget_acc": 0.5, "asr": 0.02}
    for seed, (retrain_n, not_n) in enumerate([(4, 1), (8, 6)]):
        base = tmp_path / "runs" / "backdoor" / f"seed{seed}"
        _write_run(
            base / "retrain", "retrain", _rounds("retrain", [0.5] * (retrain_n - 1) + [0.8]), final
        )
        _write_run(base / "not", "not", _rounds("recovery", [0.6] * (not_n - 1) + [0.795]))
        _write_run(base / "ft", "ft", _rounds("recovery", [0.9, 0.9]))
        # the shared original: method "not", training rows only; not a method's run
        _write_run(base / "original", "not", _rounds("train", [0.8, 0.8]))
    rows = cost_to_forget.analyse(tmp_path, window=0)  # the final model's level
    assert sorted(r["method"] for r in rows) == ["ft", "ft", "not", "not", "retrain", "retrain"]
    summary = {r["method"]: r for r in cost_to_forget.summarize(rows)}
    # NoT: 1 of 4 and 6 of 8 rounds -> 25 % and 75 %, mean 50 %; MB and CPU-s alike
    assert summary["not"]["reached"] == 2 and summary["not"]["runs"] == 2
    assert summary["not"]["pct_rounds"] == pytest.approx(50.0)
    assert summary["not"]["pct_MB"] == pytest.approx(50.0)
    assert summary["not"]["pct_client_s"] == pytest.approx(50.0)
    assert summary["not"]["rounds"]["mean"] == pytest.approx(3.5)
    assert summary["retrain"]["pct_rounds"] == pytest.approx(100.0)
    assert summary["ft"]["reached"] == 0 and summary["ft"]["pct_rounds"] is None


def test_cost_to_forget_level_is_retrains_last_rounds_and_shares_of_both_references(tmp_path):
    import cost_to_forget

    final = {"test_acc": 0.90, "forget_acc": 0.5, "asr": 0.02}  # not the level any more
    base = tmp_path / "runs" / "backdoor" / "seed0"
    # Retrain: 10 rounds, the last five at 0.80-0.84 (mean 0.82, the level); it is first
    # within a point of it at round 7 (0.81); the recipe run, at half the bytes a round,
    # at round 4
    retrain = [0.5] * 5 + [0.8, 0.81, 0.84, 0.83, 0.82]
    _write_run(base / "retrain", "retrain", _rounds("retrain", retrain), final)
    recipe = _rounds("retrain", [0.5, 0.5, 0.5, 0.82] + [0.82] * 6, mb=5.0)
    _write_run(base / "retrain-recipe", "retrain", recipe, final)
    _write_run(base / "not", "not", _rounds("recovery", [0.6, 0.812]))
    _write_run(base / "not-weights-only", "not", _rounds("recovery", [0.6, 0.6, 0.6, 0.6]))
    rows = {r["method"]: r for r in cost_to_forget.analyse(tmp_path)}
    assert rows["retrain"]["reference"]["test"] == pytest.approx(82.0)
    assert rows["retrain"]["reference"]["window"] == 5
    assert rows["retrain"]["rounds"] == 7  # round 6's 0.80 is 2 points below
    assert rows["retrain-recipe"]["rounds"] == 4 and rows["retrain-recipe"]["MB"] == 20.0
    assert rows["not"]["pct_rounds"] == pytest.approx(100 * 2 / 7)
    assert rows["not"]["recipe_pct_rounds"] == pytest.approx(50.0)
    assert rows["not"]["recipe_pct_MB"] == pytest.approx(100.0)  # 2 x 10 MB vs 4 x 5 MB
    assert rows["retrain"]["slope_per_10_rounds"] is not None
    checks = {c["method"]: c for c in cost_to_forget.goal_check(list(rows.values()))}
    # 29 % of Retrain's rounds and MB: met by 1 point; but as many MB as the recipe: missed
    assert checks["not"]["rounds"]["margin_retrain"] == pytest.approx(100 * 2 / 7 - 30)
    assert checks["not"]["MB"]["margin_recipe"] == pytest.approx(0.0)
    assert checks["not"]["met"] is False
    assert checks["not-weights-only"]["reached"] is False and not checks["not-weights-only"]["met"]
    summary = {r["method"]: r for r in cost_to_forget.summarize(list(rows.values()))}
    assert summary["not"]["recipe_pct_rounds"] == pytest.approx(50.0)
    assert summary["not-weights-only"]["pct_rounds"] is None
    cost_to_forget.plot_retrain(tmp_path, tmp_path / "retrain.png", earlier=5)
    assert (tmp_path / "retrain.png").stat().st_size > 0


def test_stopping_rule_replay_sets_each_stop_next_to_the_level_round(tmp_path):
    import json

    import stopping_rule

    base = tmp_path / "runs" / "backdoor" / "seed0"
    level = {"test_acc": 0.80, "forget_acc": 0.5, "asr": 0.02}
    _write_run(base / "retrain", "retrain", _rounds("retrain", [0.8] * 5), level)
    # NoT: request at round 3 (reference 0.90); validation accuracy climbs to 0.85 and
    # stays there (never back within 2 points); test accuracy reaches the level at its
    # 4th recovery round (0.795)
    tests = [0.5, 0.6, 0.7, 0.795, 0.80, 0.80, 0.80, 0.80]
    vals = [0.3, 0.6, 0.84, 0.85, 0.85, 0.85, 0.85, 0.85]
    rounds = _rounds("train", [0.8, 0.8]) + _rounds("recovery", tests)
    for i, row in enumerate(rounds):
        row["round"] = i + 1
        row["val_acc"] = ([0.9, 0.9] + vals)[i]
    _write_run(base / "not", "not", rounds)
    stored = json.loads((base / "not" / "results.json").read_text())
    stored["stopping"] = {"per_request": [{"reference_val_acc": 0.90}]}
    (base / "not" / "results.json").write_text(json.dumps(stored))

    runs = stopping_rule.load_runs([tmp_path])
    assert [r["method"] for r in runs] == ["not"]
    off, plateau = stopping_rule.run_grid(runs, [(0, 0.0, 0), (2, 0.005, 3)], 0.02, 5)
    assert off["stopped"] == 0 and off["per_run"][0]["stop"] is None  # never within 2 points
    (row,) = plateau["per_run"]
    # window 2: at recovery round 5 the last two (0.85, 0.85) are 1 point above the best
    # before them (0.84); at round 6 they are not above it (0.85): a plateau, 2 rounds
    # after the level
    assert (row["stop"], row["branch"], row["level_round"]) == (6, "plateau", 4)
    assert row["test"] == pytest.approx(80.0) and row["test_gap"] == pytest.approx(0.0)
    assert row["at_level"] and plateau["at_level"] == 1 and plateau["before_level"] == 0


def test_canary_table_counts_the_seeds_that_detect_the_canaries(tmp_path, capsys, monkeypatch):
    import json

    import canary_table

    def run(seed, method, models):
        folder = tmp_path / "runs" / "backdoor" / f"seed{seed}" / method
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({"models": models}))

    for seed, (p_orig, p_not) in enumerate([(0.0001, 0.30), (0.0002, 0.01)]):
        original = {"canary_p": p_orig, "canary_auc": 0.95, "asr": 0.8}
        run(
            seed,
            "not",
            {
                "original": original,
                "recovered@10": {"canary_p": p_not, "canary_auc": 0.5, "asr": 0.0},
            },
        )
        run(
            seed,
            "ft",
            {
                "original": original,
                "recovered@10": {"canary_p": 0.0001, "canary_auc": 0.9, "asr": 0.7},
            },
        )
        run(seed, "retrain", {"retrained": {"canary_p": 0.7, "canary_auc": 0.45, "asr": 0.0}})
    rows = canary_table.collect(tmp_path)
    got = {(r["method"], r["model"]): r["detected"] for r in rows}
    # the shared original once; NoT detected in one seed of two (p 0.01), Retrain in none
    assert got == {
        ("Original", "original"): 2,
        ("retrain", "retrained"): 0,
        ("ft", "recovered@10"): 2,
        ("not", "recovered@10"): 1,
    }
    assert [r["method"] for r in rows] == ["Original", "retrain", "ft", "not"]
    assert (
        "| backdoor | not | recovered@10 | 0.3000, 0.0100 | 0.500, 0.500 | 1 of 2 | 0.0, 0.0 |"
        in (canary_table.table(rows))
    )
    monkeypatch.setattr(sys, "argv", ["canary_table.py", str(tmp_path / "nothing")])
    with pytest.raises(SystemExit):
        canary_table.main()
    assert "has no runs/ folder" in capsys.readouterr().err


def test_clientapp_start_benchmark_refuses_no_repeats(capsys):
    import clientapp_start  # noqa: PLC0415

    assert clientapp_start.main(["--repeats", "0"]) == 2
    assert "--repeats must be >= 1, got 0" in capsys.readouterr().err
    assert set(clientapp_start.VARIANTS) == {"app (now)", "app + scikit-learn (before)"}
    assert "sklearn" not in clientapp_start.VARIANTS["app (now)"]


def test_dead_units_counts_units_that_never_fire_and_negates_as_not_does(tmp_path, capsys):
    import torch  # noqa: PLC0415
    from torch import nn  # noqa: PLC0415

    import dead_units  # noqa: PLC0415

    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        model[0].bias.copy_(torch.tensor([0.0, 0.0, -100.0]))  # unit 2 never fires
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    found = dead_units.alive_units(model, x)
    assert list(found) == ["0", "logit_std"]  # the hidden layer only, not the output layer
    assert found["0"]["alive"] == 2 and found["0"]["units"] == 3
    assert found["0"]["positive"] == round(4 / 9, 4)  # x1 on 2 inputs, x2 on 2, unit 2 never
    state = {k: v.clone() for k, v in model.state_dict().items()}
    both = dead_units.negated(model, state, ["first"], x, bias=True)
    weights = dead_units.negated(model, state, ["0"], x, bias=False)
    # "first" resolves as NoT resolves it (the library's plan), to layer 0
    assert torch.equal(both["0.bias"], -state["0.bias"])
    assert torch.equal(weights["0.bias"], state["0.bias"])
    assert torch.equal(both["0.weight"], -state["0.weight"])
    assert torch.equal(weights["0.weight"], -state["0.weight"])
    assert torch.equal(both["2.weight"], state["2.weight"])  # the output layer: never
    assert torch.equal(model.state_dict()["0.weight"], -state["0.weight"])  # model reused
    with pytest.raises(SystemExit, match="output layer"):
        dead_units.negated(model, state, ["1"], x, bias=True)  # index 1: module "2"
    assert dead_units.main(["--images", "0", str(tmp_path / "x.pt")]) == 2
    assert "--images must be >= 1, got 0" in capsys.readouterr().err
    assert dead_units.main([str(tmp_path / "missing.pt")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
