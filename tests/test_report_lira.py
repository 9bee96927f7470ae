"""The per-example attack in the comparison report: rows, second gap, noise floor, sanity check."""

from __future__ import annotations

import pytest

from not_flower.evaluation.metrics import GAP_KEYS_LIRA, avg_gap
from not_flower.experiments import compare, report
from tests.test_compare import metrics, record, retrain_results, unlearner_results


def lira(m, auc, tpr1, tpr01=0.0, retain_tpr1=0.3):
    return {
        **m,
        "lira_auc": auc,
        "lira_tpr_fpr1": tpr1,
        "lira_tpr_fpr01": tpr01,
        "lira_retain_tpr_fpr1": retain_tpr1,
    }


RETRAIN = {
    0: lira(metrics(0.90, 0.10, 0.88, 0.50), 0.52, 0.010),
    1: lira(metrics(0.92, 0.12, 0.90, 0.52), 0.50, 0.020),
}
ORIG = {
    0: lira(metrics(0.96, 0.95, 0.91, 0.05), 0.80, 0.150, 0.05),
    1: lira(metrics(0.96, 0.95, 0.91, 0.05), 0.78, 0.120, 0.04),
}
NOT10 = {
    0: lira(metrics(0.91, 0.12, 0.87, 0.49), 0.55, 0.015),
    1: lira(metrics(0.90, 0.10, 0.92, 0.56), 0.54, 0.030),
}


def _runs(orig=ORIG):
    out = []
    for seed in (0, 1):
        out.append(record("backdoor", seed, "retrain", retrain_results(RETRAIN[seed])))
        out.append(
            record("backdoor", seed, "not", unlearner_results("not", orig[seed], {10: NOT10[seed]}))
        )
    return out


def test_rows_carry_lira_numbers_and_the_second_gap():
    s = report.summarize_scenario(_runs(), "backdoor", ks=[10])
    row = s["methods"]["NoT@10"]["per_seed"]["0"]
    assert row["lira_auc"] == pytest.approx(55.0) and row["lira_tpr1"] == pytest.approx(1.5)
    assert row["lira_retain_tpr1"] == pytest.approx(30.0)
    # Avg Gap (LiRA): |retain| 1 + |forget| 2 + |test| 1 + |AUC| 3 = 7 points / 4
    assert row["avg_gap_lira"] == pytest.approx(avg_gap(NOT10[0], RETRAIN[0], GAP_KEYS_LIRA))
    assert row["avg_gap_lira"] == pytest.approx(1.75)
    # the paper's Avg Gap is unchanged by the new keys
    assert row["avg_gap"] == pytest.approx(avg_gap(NOT10[0], RETRAIN[0]))
    assert s["methods"]["Original"]["stats"]["lira_tpr1"]["mean"] == pytest.approx(13.5)


def test_noise_floor_of_the_attack():
    nf = report.summarize_scenario(_runs(), "backdoor", ks=[10])["noise_floor"]
    lira_nf = nf["lira"]
    assert lira_nf["lira_auc_diff"]["mean"] == pytest.approx(2.0)
    assert lira_nf["lira_tpr1_diff"]["mean"] == pytest.approx(1.0)
    assert lira_nf["avg_gap_lira"]["mean"] == pytest.approx((2 + 2 + 2 + 2) / 4)


def test_markdown_table_and_separation_verdict():
    text = report.render_markdown(report.build_report(_runs(), ks=[10]))
    assert "| method | LiRA AUC | TPR@1%FPR |" in text
    assert "| NoT@10 | 54.50 ± 0.71 | 2.25 ± 1.06 |" in text
    assert "LiRA separates Original from Retrain" in text and "seed 0: 15.0 vs 1.0" in text
    weak = {s: lira(metrics(0.96, 0.95, 0.91, 0.05), 0.53, 0.02) for s in (0, 1)}
    text = report.render_markdown(report.build_report(_runs(weak), ks=[10]))
    assert "LiRA does NOT separate Original from Retrain" in text
    assert "nothing for the attack to detect" in text


def test_no_lira_numbers_no_table():
    plain = [record("backdoor", 0, "retrain", retrain_results(metrics(0.9, 0.1, 0.9, 0.5)))]
    text = report.render_markdown(report.build_report(plain))
    assert "LiRA" not in text


def test_compare_turns_the_attack_on_by_default(tmp_path):
    args = compare.parse_args(["--out", str(tmp_path)])
    cfg = compare.run_config_for(args, "backdoor", 0, "not")
    assert cfg["mia.reference-models"] == 8
    assert cfg["mia.cache-dir"] == str(tmp_path.resolve() / "mia-reference")
    off = compare.run_config_for(
        compare.parse_args(["--out", str(tmp_path), "--mia-reference-models", "0"]),
        "backdoor",
        0,
        "not",
    )
    assert "mia.reference-models" not in off
    with pytest.raises(SystemExit):
        compare.parse_args(["--out", str(tmp_path), "--mia-reference-models", "3"])


# -- a backdoor the Original never learned is named in the report (#25.9) ----------------
def _asr_summary(original: dict, retrain: dict) -> dict:
    return {
        "methods": {
            "Original": {"per_seed": {s: {"asr": v} for s, v in original.items()}},
            "Retrain": {"per_seed": {s: {"asr": v} for s, v in retrain.items()}},
        }
    }


def test_report_warns_when_the_original_never_learned_the_backdoor():
    from not_flower.experiments.report_markdown import backdoor_not_learned

    lines = backdoor_not_learned(_asr_summary({"0": 3.4, "1": 96.0}, {"0": 1.6, "1": 1.2}))
    assert len(lines) == 2 and "never learned the backdoor" in lines[0]
    assert "seed 0 (Original 3.40 %, Retrain 1.60 %)" in lines[0] and "seed 1" not in lines[0]


def test_report_says_nothing_when_the_backdoor_was_learned_or_absent():
    from not_flower.experiments.report_markdown import backdoor_not_learned

    assert backdoor_not_learned(_asr_summary({"0": 90.0}, {"0": 2.0})) == []
    assert backdoor_not_learned({"methods": {"Original": {"per_seed": {"0": {"asr": None}}}}}) == []
    assert backdoor_not_learned({"methods": {}}) == []


def test_canary_columns_and_their_check_appear_only_with_canary_numbers():
    def canaries(m, auc, tpr1):
        return {**m, "lira_canary_auc": auc, "lira_canary_tpr_fpr1": tpr1}

    orig = {s: canaries(ORIG[s], 0.98, 0.50 + 0.1 * s) for s in (0, 1)}
    runs = []
    for seed in (0, 1):  # Retrain never saw the canaries
        retrained = canaries(RETRAIN[seed], 0.55 + 0.1 * seed, 0.03125)
        runs.append(record("backdoor", seed, "retrain", retrain_results(retrained)))
        runs.append(
            record("backdoor", seed, "not", unlearner_results("not", orig[seed], {10: NOT10[seed]}))
        )
    text = report.render_markdown(report.build_report(runs, ks=[10]))
    assert "| Avg Gap (LiRA) | canary LiRA AUC | canary TPR@1%FPR |" in text
    assert "| Original | 79.00 ± 1.41 |" in text and "| 98.00 ± 0.00 | 55.00 ± 7.07 |" in text
    assert "| 60.00 ± 7.07 | 3.12 ± 0.00 |" in text  # Retrain's canary AUC and TPR
    assert (
        "LiRA separates Original from Retrain on the departing client's canaries "
        "(TPR@1%FPR, Original vs Retrain: seed 0: 50.0 vs 3.1, seed 1: 60.0 vs 3.1 %)"
    ) in text
    assert "| NoT@10 | 54.50 ± 0.71 | 2.25 ± 1.06 |" in text  # rows without them: "–"
    plain = report.render_markdown(report.build_report(_runs(), ks=[10]))
    assert "canary LiRA" not in plain and "departing client's canaries" not in plain
