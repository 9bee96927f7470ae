"""The departing client's canary test in the comparison report: rows, table, sanity check."""

from __future__ import annotations

import pytest

from not_flower.experiments import report
from tests.test_compare import metrics, record, retrain_results, unlearner_results

INTRO = "The departing client's canary test (16 in-canaries and as many kept out;"


def canary(m, p, auc, n=16):
    """Model metrics ``m`` with the canary test's numbers (as the evaluator writes them)."""
    return {**m, "canary_p": p, "canary_auc": auc, "canary_n": float(n)}


def _runs(orig_p=(0.0001, 0.0002), retrain_p=(0.81, 0.27), not_p=(0.26, 0.63)):
    """Retrain and NoT (Original, NoT@10) of seeds 0 and 1, with the given p-values."""
    out = []
    for seed in (0, 1):
        retrain = canary(metrics(0.90, 0.10, 0.88, 0.50), retrain_p[seed], 0.41 + 0.1 * seed)
        orig = canary(metrics(0.96, 0.95, 0.91, 0.05), orig_p[seed], 0.95 + 0.05 * seed)
        not10 = canary(metrics(0.91, 0.12, 0.87, 0.49), not_p[seed], 0.57 - 0.1 * seed)
        out.append(record("backdoor", seed, "retrain", retrain_results(retrain)))
        out.append(record("backdoor", seed, "not", unlearner_results("not", orig, {10: not10})))
    return out


def test_rows_carry_the_raw_p_value_and_the_auc_in_percent():
    s = report.summarize_scenario(_runs(), "backdoor", ks=[10])
    row = s["methods"]["NoT@10"]["per_seed"]["1"]
    assert row["canary_p"] == pytest.approx(0.63)  # a p-value, not scaled to %
    assert row["canary_auc"] == pytest.approx(47.0)
    assert row["canary_n"] == 16
    stats = s["methods"]["Original"]["stats"]
    assert stats["canary_auc"]["mean"] == pytest.approx(97.5)
    assert stats["canary_p"]["mean"] == pytest.approx(0.00015)
    # the other numbers do not move
    assert row["avg_gap"] is not None and row["lira_auc"] is None
    assert {"canary_p", "canary_auc", "canary_n"} <= set(report.UNITS)


def test_rows_without_canaries_have_none():
    plain = [record("backdoor", 0, "retrain", retrain_results(metrics(0.9, 0.1, 0.9, 0.5)))]
    row = report.summarize_scenario(plain, "backdoor")["methods"]["Retrain"]["per_seed"]["0"]
    assert row["canary_p"] is None and row["canary_auc"] is None and row["canary_n"] is None


def test_table_lists_p_per_seed_auc_and_seeds_detected():
    lines = report.render_canary_table(report.summarize_scenario(_runs(), "backdoor", ks=[10]))
    assert lines[:2] == [report.CANARY_HEADER, "|---|---|---|---|"]
    assert lines[2] == "| Original | 0.0001, 0.0002 | 97.50 ± 3.54 | 2 of 2 seeds |"
    assert lines[3] == "| Retrain | 0.8100, 0.2700 | 46.00 ± 7.07 | 0 of 2 seeds |"
    assert lines[4] == "| NoT@10 | 0.2600, 0.6300 | 52.00 ± 7.07 | 0 of 2 seeds |"
    assert lines[5] == ""
    assert lines[6].startswith("Sanity check: the canary test separates Original from Retrain")
    assert "in Original in 2 of 2 seeds, in Retrain in 0 of 2" in lines[6]
    assert len(lines) == 7


def test_the_sanity_check_says_plainly_when_the_test_cannot_tell():
    # Original missed in one seed: the test cannot tell a kept canary from none
    missed = report.summarize_scenario(_runs(orig_p=(0.0001, 0.3)), "backdoor", ks=[10])
    text = report.canary_separation(missed)
    assert "does NOT separate Original from Retrain" in text
    assert "in Original in 1 of 2 seeds, in Retrain in 0 of 2" in text
    assert "no evidence either way" in text
    # Retrain flagged in one seed (a false positive): no separation either
    flagged = report.summarize_scenario(_runs(retrain_p=(0.81, 0.01)), "backdoor", ks=[10])
    assert "does NOT separate" in report.canary_separation(flagged)
    # the threshold is strict: p = 0.05 is not detected
    edge = report.summarize_scenario(_runs(orig_p=(0.0001, 0.05)), "backdoor", ks=[10])
    assert "does NOT separate" in report.canary_separation(edge)


def test_sanity_check_without_retrain_canaries_says_it_is_not_possible():
    runs = [r for r in _runs() if r["method"] != "retrain"]
    summary = report.summarize_scenario(runs, "backdoor", ks=[10])
    lines = report.render_canary_table(summary)
    assert lines[2].startswith("| Original | 0.0001, 0.0002 |")
    assert lines[-1].startswith("Sanity check not possible")


def test_markdown_has_the_section_after_lira_and_before_the_noise_floor():
    text = report.render_markdown(report.build_report(_runs(), ks=[10]))
    assert INTRO in text and "detected when p < 0.05):" in text
    assert text.index(INTRO) < text.index("| method | canary p per seed |")
    assert text.index("| NoT@10 | 0.2600, 0.6300 |") < text.index("Retrain vs Retrain")


def test_intro_omits_the_count_when_runs_disagree():
    runs = _runs()
    runs[0]["results"]["models"]["retrained"]["canary_n"] = 8.0
    text = report.render_markdown(report.build_report(runs, ks=[10]))
    assert "The departing client's canary test (one-sided permutation test;" in text


def test_no_canary_numbers_no_table():
    plain = [record("backdoor", 0, "retrain", retrain_results(metrics(0.9, 0.1, 0.9, 0.5)))]
    summary = report.summarize_scenario(plain, "backdoor")
    assert report.render_canary_table(summary) == []
    text = report.render_markdown(report.build_report(plain))
    assert "canary" not in text
