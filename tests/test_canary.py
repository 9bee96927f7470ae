"""The departing client's canary check: generator, scores, permutation test, CLI, harness."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord

from not_flower.app.forgetting_records import canary_check
from not_flower.app.specs import data_spec, reference_spec
from not_flower.common.config import ConfigError, parse_run_config
from not_flower.common.store import save_checkpoint
from not_flower.evaluation.canary_cli import main
from not_flower.evaluation.evaluator import Evaluator, targets_canaries
from not_flower.task.canary import (
    ALPHA,
    canary_scores,
    canary_test,
    check_model,
    client_canary_seed,
    make_canaries,
    node_canary_seed,
    permutation_p_value,
    rank_auc,
)
from not_flower.task.data import load_dataset
from not_flower.task.models import build_model
from not_flower.task.training import client_canaries, client_data, train

SHAPE = (1, 8, 8)


# --- generator ----------------------------------------------------------------------------


def test_canaries_are_deterministic_random_black_and_white_images_with_random_labels():
    a = make_canaries(7, SHAPE, 10, 16)
    b = make_canaries(7, SHAPE, 10, 16)
    c = make_canaries(8, SHAPE, 10, 16)
    assert a.x_in.shape == (16, 1, 8, 8) and a.x_out.shape == (16, 1, 8, 8)
    assert a.x_in.dtype == np.float32 and a.y_in.dtype == np.int64
    assert set(np.unique(a.x_in)) == {0.0, 1.0}  # black-and-white pixels
    assert 0.4 < a.x_in.mean() < 0.6
    for name in ("x_in", "y_in", "x_out", "y_out"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.x_in, c.x_in)
    assert not np.array_equal(a.x_in, a.x_out)
    assert set(np.concatenate([a.y_in, a.y_out])) <= set(range(10))
    assert make_canaries(7, SHAPE, 10, 4, 9).x_out.shape[0] == 9
    assert a.spec() == {"seed": 7, "n_in": 16, "n_out": 16, "input_shape": [1, 8, 8]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, SHAPE, 10, 4), "canary seed must be an integer >= 0; got -1"),
        ((0, SHAPE, 10, 0), "n_in must be an integer >= 1; got 0"),
        ((0, SHAPE, 1, 4), "num_classes must be an integer >= 2; got 1"),
        ((0, (8, 8), 10, 4), r"input_shape must be \(C, H, W\)"),
        ((1.5, SHAPE, 10, 4), "canary seed must be an integer"),
    ],
)
def test_bad_generator_input_is_named(args, message):
    with pytest.raises(ValueError, match=message):
        make_canaries(*args)


def test_simulated_clients_get_different_seeds():
    seeds = {client_canary_seed(s, p) for s in range(3) for p in range(10)}
    assert len(seeds) == 30


# --- scores and test ------------------------------------------------------------------------


def test_score_is_the_logit_scaled_confidence_of_the_own_label():
    torch.manual_seed(0)
    model = build_model("mlp", SHAPE, 10)
    c = make_canaries(0, SHAPE, 10, 8)
    with torch.no_grad():
        p = torch.softmax(model(torch.from_numpy(c.x_in)).double(), 1).numpy()
    own = p[np.arange(8), c.y_in]
    expected = np.log(own) - np.log(1 - own)
    np.testing.assert_allclose(canary_scores(model, c.x_in, c.y_in), expected, rtol=1e-9)


def test_rank_auc_counts_pairs_and_halves_ties():
    assert rank_auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert rank_auc([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert rank_auc([1.0, 1.0], [1.0, 1.0]) == 0.5
    assert rank_auc([2.0, 0.0], [1.0]) == 0.5


def test_p_value_is_uniform_under_the_null():
    """Exchangeable scores (same distribution): P(p <= a) is about a, never much above."""
    rng = np.random.default_rng(0)
    ps = np.array(
        [
            permutation_p_value(rng.normal(size=16), rng.normal(size=16), permutations=199, seed=t)
            for t in range(1000)
        ]
    )
    # binomial(1000, a): 3 standard deviations
    for a in (0.05, 0.1, 0.5):
        sd = np.sqrt(a * (1 - a) / 1000)
        assert abs(np.mean(ps <= a) - a) < 3 * sd, (a, np.mean(ps <= a))
    assert ps.min() >= 1 / 200 and ps.max() <= 1.0


def test_p_value_detects_shifted_scores_and_is_one_sided():
    rng = np.random.default_rng(1)
    high, low = rng.normal(2.0, 1.0, size=16), rng.normal(0.0, 1.0, size=16)
    assert permutation_p_value(high, low) < 0.001
    assert permutation_p_value(low, high) > 0.99  # out-canaries fitting better is no evidence
    result = canary_test(high, low)
    assert result["detected"] and result["alpha"] == ALPHA == 0.05
    assert result["n_in"] == result["n_out"] == 16 and result["auc"] > 0.85
    assert permutation_p_value(high, low, seed=3) == permutation_p_value(high, low, seed=3)


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "message"),
    [
        ([], [1.0], {}, "need at least one in- and one out-score"),
        ([np.nan], [1.0], {}, "scores must be finite"),
        ([1.0], [1.0], {"permutations": 0}, "permutations must be an integer >= 1"),
    ],
)
def test_bad_test_input_is_named(a, b, kwargs, message):
    with pytest.raises(ValueError, match=message):
        permutation_p_value(a, b, **kwargs)
    with pytest.raises(ValueError, match=r"alpha must be a number in \(0, 1\)"):
        canary_test([1.0], [2.0], alpha=1.5)


# --- the check on trained models ------------------------------------------------------------


def _trained(seed: int, canaries=None, epochs: int = 5) -> torch.nn.Module:
    data = load_dataset("digits")
    x, y = data.x_train, data.y_train
    if canaries is not None:
        x, y = np.concatenate([x, canaries.x_in]), np.concatenate([y, canaries.y_in])
    torch.manual_seed(seed)
    model = build_model("mlp", data.input_shape, data.num_classes)
    train(model, x, y, epochs=epochs, batch_size=32, lr=0.05, momentum=0.9, seed=seed)
    return model


def test_twenty_seeded_trials_detect_trained_canaries_and_not_unseen_ones():
    """Done-when check: trained-on canaries detected; unseen ones p > 0.05 in >= 19 of 20.

    Trial t: an MLP trains 5 epochs on the digits and the 16 in-canaries of seed t; the
    check runs on those (trained on) and on the canaries of seed 1000 + t (never seen by
    that model: in- and out-canaries exchangeable). Measured: 20 of 20 detected (largest
    p 0.0005), 19 of 20 unseen sets above 0.05 (smallest p 0.003). A valid test at alpha
    0.05 flags an unseen set with probability 0.05, so 2 or more of 20 happen for about one
    fixed set of seeds in four (binomial); these seeds give 1.
    """
    torch.set_num_threads(1)
    data = load_dataset("digits")
    seen, unseen = [], []
    for t in range(20):
        mine = make_canaries(t, data.input_shape, data.num_classes, 16)
        other = make_canaries(1000 + t, data.input_shape, data.num_classes, 16)
        model = _trained(t, mine)
        seen.append(check_model(model, mine)["p_value"])
        unseen.append(check_model(model, other)["p_value"])
    print(
        f"trained-on canaries detected in {sum(p < ALPHA for p in seen)}/20 (largest p "
        f"{max(seen):.4g}); unseen canaries p > {ALPHA} in {sum(p > ALPHA for p in unseen)}"
        f"/20 (smallest p {min(unseen):.4g})"
    )
    assert all(p < ALPHA for p in seen)
    assert sum(p > ALPHA for p in unseen) >= 19


# --- CLI ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A model trained on the canaries of seed 5, and one trained without them."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("canary")
    data = load_dataset("digits")
    meta = {"model": "mlp", "dataset": "digits", "input_shape": [1, 8, 8], "num_classes": 10}
    mine = make_canaries(5, data.input_shape, data.num_classes, 16)
    paths = {}
    for name, canaries in (("with", mine), ("without", None)):
        model = _trained(0, canaries)
        paths[name] = save_checkpoint(folder / f"{name}.pt", ArrayRecord(model.state_dict()), meta)
    return paths


def test_cli_detects_the_canaries_a_checkpoint_trained_on(checkpoints, tmp_path, capsys):
    out = tmp_path / "check.json"
    ckpt = str(checkpoints["with"])
    code = main(["check", "--checkpoint", ckpt, "--seed", "5", "--json", str(out)])
    assert code == 1
    assert capsys.readouterr().out.startswith("DETECTED: the model still carries the canaries")
    result = json.loads(out.read_text())
    assert result["detected"] and result["p_value"] < 0.05 and result["n_in"] == 16
    assert result["canaries"] == {"n_in": 16, "n_out": 16, "input_shape": [1, 8, 8]}
    assert len(result["model_sha256"]) == 64 and "seed" not in json.dumps(result["canaries"])


def test_cli_says_not_detected_for_a_model_without_them(checkpoints, capsys):
    code = main(["check", "--checkpoint", str(checkpoints["without"]), "--seed", "5"])
    line = capsys.readouterr().out
    assert code == 0 and line.startswith("not detected"), line


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
        (["--canary-seed", "0"], "--canary-seed needs --client"),
        (["--seed", "1", "--client", "2"], "--client goes with --canary-seed"),
        (["--seed", "1", "--count", "0"], "--count must be an integer >= 1, got 0"),
        (["--seed", "1", "--alpha", "2"], r"--alpha must be in \(0, 1\), got 2.0"),
    ],
)
def test_cli_refuses_bad_input_before_any_work(checkpoints, extra, message, capsys):
    assert main(["check", "--checkpoint", str(checkpoints["with"])] + extra) == 2
    assert re.search(message, capsys.readouterr().err)


def test_cli_names_a_missing_checkpoint(tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    assert main(["check", "--checkpoint", str(missing), "--seed", "1"]) == 2
    assert f"--checkpoint {str(missing)!r} does not exist" in capsys.readouterr().err


# --- run config, client data, harness -------------------------------------------------------


def test_canary_clients_plant_their_in_canaries_after_their_own_samples():
    plain = parse_run_config({})
    cfg = parse_run_config({"canary.clients": "1", "canary.count": 8, "canary.seed": 3})
    assert cfg.canary_clients == ("1",) and cfg.canary_count == 8 and cfg.canary_seed == 3
    before, after = client_data(data_spec(plain), 1, 4), client_data(data_spec(cfg), 1, 4)
    n = len(before.y_train)
    np.testing.assert_array_equal(after.x_train[:n], before.x_train)  # ids unchanged
    np.testing.assert_array_equal(after.canaries, np.arange(n, n + 8))
    planted = client_canaries(data_spec(cfg), 1)
    assert planted.seed == client_canary_seed(3, 1)
    np.testing.assert_array_equal(after.x_train[n:], planted.x_in)
    np.testing.assert_array_equal(after.y_train[n:], planted.y_in)
    assert (
        len(client_data(data_spec(cfg), 0, 4).canaries) == 0
        and client_canaries(data_spec(cfg), 0) is None
    )
    assert len(plain.canary_clients) == 0 and plain.canary_count == 16


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("canary.clients", "a", "canary.clients must be partition ids"),
        ("canary.count", 0, "canary.count must be >= 1"),
        ("canary.seed", -2, "canary.seed must be >= 0"),
    ],
)
def test_bad_canary_settings_are_named(key, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_run_config({key: value})


def test_the_harness_pools_the_targets_canaries_and_records_the_test():
    cfg = parse_run_config({"canary.clients": "1,2", "canary.count": 4})
    assert targets_canaries(data_spec(cfg), {0, 3}) is None
    pooled = targets_canaries(data_spec(cfg), {0, 1, 2})
    assert len(pooled.y_in) == len(pooled.y_out) == 8
    np.testing.assert_array_equal(pooled.x_in[:4], client_canaries(data_spec(cfg), 1).x_in)
    before = {"canary_auc": 0.97, "canary_p": 0.0001, "canary_n": 16.0}
    after = {"canary_auc": 0.55, "canary_p": 0.31, "canary_n": 16.0}
    assert canary_check(before, after) == {
        "alpha": 0.05,
        "before_request": {"auc": 0.97, "p_value": 0.0001, "detected": True, "n_in": 16},
        "final": {"auc": 0.55, "p_value": 0.31, "detected": False, "n_in": 16},
    }
    assert canary_check({"test_acc": 0.9}, {}) == {}


def test_the_evaluator_measures_the_targets_canaries_on_every_named_model():
    cfg = parse_run_config({"canary.clients": "1", "model": "mlp"})
    torch.manual_seed(0)
    model = build_model("mlp", SHAPE, 10)
    evaluator = Evaluator(data_spec(cfg), model, membership=reference_spec(cfg))
    arrays = ArrayRecord(model.state_dict())
    assert "canary_p" not in evaluator.full(arrays)  # no request yet: no target
    evaluator.set_forget(4, {0})
    assert "canary_p" not in evaluator.full(arrays)  # the target planted none
    evaluator.set_forget(4, {1})
    out = evaluator.full(arrays)
    expected = check_model(model, client_canaries(data_spec(cfg), 1))
    assert out["canary_p"] == expected["p_value"] and out["canary_auc"] == expected["auc"]
    assert out["canary_n"] == 16.0


@pytest.mark.e2e  # starts `python -m not_flower.evaluation.canary_cli` as its own process
def test_python_dash_m_canary_check_runs_as_the_readme_shows(checkpoints):
    """``python -m not_flower.evaluation.canary_cli check`` (README, evaluation guide) as a
    command."""
    import subprocess
    import sys

    runs = {
        name: subprocess.run(
            [
                sys.executable,
                "-m",
                "not_flower.evaluation.canary_cli",
                "check",
                "--checkpoint",
                str(path),
            ]
            + ["--seed", "5"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        for name, path in checkpoints.items()
    }
    assert runs["with"].returncode == 1, runs["with"].stderr[-2000:]
    assert runs["with"].stdout.startswith("DETECTED: the model still carries the canaries")
    assert runs["without"].returncode == 0, runs["without"].stderr[-2000:]
    bad = subprocess.run(
        [sys.executable, "-m", "not_flower.evaluation.canary_cli", "check", "--seed", "5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "--checkpoint" in bad.stderr


def test_a_deployed_client_plants_the_canaries_of_its_own_node_config_seed():
    """A SuperNode started with ``--node-config "... canary-seed=SECRET"``: the ClientApp
    plants SECRET's canaries (whatever canary.clients says), which the server never sees."""
    from flwr.app import Context, RecordDict

    from not_flower.app.client_app import _setup

    settings = {"canary.count": 8, "model": "mlp"}
    cfg = parse_run_config(settings)
    data = load_dataset("digits")
    mine = make_canaries(12345, data.input_shape, data.num_classes, 8)
    n = len(client_data(data_spec(cfg), 1, 4).y_train)
    for run_config in (settings, {**settings, "canary.clients": "1"}):  # the node's seed wins
        planted = client_data(data_spec(parse_run_config(run_config)), 1, 4, canary_seed=12345)
        np.testing.assert_array_equal(planted.canaries, np.arange(n, n + 8))
        np.testing.assert_array_equal(planted.x_train[n:], mine.x_in)
        np.testing.assert_array_equal(planted.y_train[n:], mine.y_in)
    # through the ClientApp: read from the node config, as Flower hands it over
    model = build_model("mlp", data.input_shape, data.num_classes)
    msg = SimpleNamespace(content=RecordDict({"arrays": ArrayRecord(model.state_dict())}))
    node = {"partition-id": 1, "num-partitions": 4, "canary-seed": "12345"}
    context = Context(
        run_id=1, node_id=1, node_config=node, state=RecordDict(), run_config=settings
    )
    _, part, _ = _setup(msg, context)
    np.testing.assert_array_equal(part.x_train[n:], mine.x_in)
    context.node_config = {"partition-id": 1, "num-partitions": 4}
    assert len(_setup(msg, context)[1].canaries) == 0  # without the key: none


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", True])
def test_a_bad_node_config_canary_seed_is_named(value):
    with pytest.raises(ValueError, match=r"node config canary-seed=.*integer >= 0"):
        node_canary_seed({"canary-seed": value})
    assert node_canary_seed({}) is None and node_canary_seed({"canary-seed": 7}) == 7
