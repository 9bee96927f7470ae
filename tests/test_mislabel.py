"""The ``mislabel`` and ``style`` scenarios: data only the target has (wrong labels; inverted).

Unit tests, no Flower: :func:`not_flower.task.mislabel.mislabel`, the clients' data under the
scenario's run config, and the held-out mislabelled samples the membership attack adds.
"""

from __future__ import annotations

import numpy as np
import pytest

from not_flower.app.specs import data_spec
from not_flower.common.config import parse_run_config
from not_flower.evaluation.reference_models import MISLABELLED, build_universe, forget_mask
from not_flower.experiments.plan import MISLABEL_FRACTION, scenario_config
from not_flower.task.data import load_dataset
from not_flower.task.mislabel import mislabel
from not_flower.task.training import client_data


def test_mislabel_changes_exactly_the_share_and_never_to_the_same_label():
    y = np.repeat(np.arange(10), 20)
    out, idx = mislabel(y, 0.3, 10, seed=4)
    assert len(idx) == 60 and (np.diff(idx) > 0).all()
    assert (out[idx] != y[idx]).all() and (out[idx] >= 0).all() and (out[idx] < 10).all()
    rest = np.setdiff1d(np.arange(len(y)), idx)
    np.testing.assert_array_equal(out[rest], y[rest])
    again, idx2 = mislabel(y, 0.3, 10, seed=4)
    np.testing.assert_array_equal(again, out)
    np.testing.assert_array_equal(idx2, idx)
    assert len(np.unique(out[idx])) > 5  # drawn among the other classes, not one class
    assert y.sum() == np.repeat(np.arange(10), 20).sum()  # input untouched


@pytest.mark.parametrize(
    "args, match",
    [((1.5, 10), "fraction"), ((0.3, 1), "num_classes"), ((0.3, 5), "labels in")],
)
def test_mislabel_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        mislabel(np.arange(10), args[0], args[1], seed=0)


def _cfg(target=2):
    keys = {k: v for k, v in scenario_config("mislabel", target=target).items()}
    return parse_run_config({**keys, "mia.reference-models": 2, "mia.reference-epochs": 1})


def test_scenario_mislabels_a_share_of_the_targets_samples_only():
    cfg = _cfg(target=2)
    assert cfg.mislabel_clients == ("2",) and cfg.unlearn_clients == ("2",)
    assert cfg.mislabel_fraction == MISLABEL_FRACTION and not cfg.backdoor_clients
    data = load_dataset("digits")
    plain = parse_run_config({"partitioner": "iid"})
    for pid in range(5):
        got, clean = client_data(data_spec(cfg), pid, 5), client_data(data_spec(plain), pid, 5)
        np.testing.assert_array_equal(got.x_train, clean.x_train)  # same images
        changed = np.flatnonzero(got.y_train != clean.y_train)
        if pid == 2:
            np.testing.assert_array_equal(changed, got.mislabelled)
            assert len(changed) == round(MISLABEL_FRACTION * len(got.y_train))
        else:
            assert len(changed) == 0 and len(got.mislabelled) == 0
    assert data.num_classes == 10


def test_universe_holds_as_many_mislabelled_held_out_images_as_the_target():
    cfg = _cfg(target=2)
    u = build_universe(data_spec(cfg), 5)
    target = client_data(data_spec(cfg), 2, 5)
    kind = u.kind
    lo = u.offsets[2]
    assert (kind[: u.offsets[-1]] == MISLABELLED).sum() == len(target.mislabelled)
    assert (kind[lo + target.mislabelled] == MISLABELLED).all()
    held = kind[u.heldout]
    assert (held == MISLABELLED).sum() == len(target.mislabelled)
    # the held-out copies are test images with a label other than their own
    test = load_dataset("digits")
    copies = np.flatnonzero(held == MISLABELLED)
    xs = u.x[u.heldout][copies]
    for x, y in zip(xs[:10], u.y[u.heldout][copies][:10]):
        match = np.flatnonzero((test.x_test == x).all(axis=(1, 2, 3)))
        assert len(match) >= 1 and (test.y_test[match] != y).all()
    mask = forget_mask(u, {2})
    assert mask.sum() == len(target.y_train) and not mask[u.heldout].any()


def test_style_scenario_inverts_the_targets_images_only_and_the_universe_matches_them():
    from not_flower.evaluation.reference_models import STYLED
    from not_flower.task.mislabel import invert

    cfg = parse_run_config({**scenario_config("style", target=1), "mia.reference-models": 2})
    assert cfg.style_clients == ("1",) and cfg.unlearn_clients == ("1",)
    plain = parse_run_config({"partitioner": "iid"})
    for pid in range(4):
        got, clean = client_data(data_spec(cfg), pid, 4), client_data(data_spec(plain), pid, 4)
        np.testing.assert_array_equal(got.y_train, clean.y_train)  # labels kept
        want = invert(clean.x_train) if pid == 1 else clean.x_train
        np.testing.assert_allclose(got.x_train, want)
    u = build_universe(data_spec(cfg), 4)
    n_target = u.offsets[2] - u.offsets[1]
    assert (u.kind[u.offsets[1] : u.offsets[2]] == STYLED).all()
    assert (u.kind[: u.offsets[-1]] == STYLED).sum() == n_target
    held = u.kind[u.heldout] == STYLED
    assert held.sum() == n_target  # as many inverted test images, labels kept
    test = load_dataset("digits")
    for x, y in zip(u.x[u.heldout][held][:10], u.y[u.heldout][held][:10]):
        match = np.flatnonzero(np.isclose(test.x_test, invert(x)).all(axis=(1, 2, 3)))
        assert len(match) >= 1 and (test.y_test[match] == y).any()


def test_memorise_scenario_inverted_and_mislabelled_with_matching_held_out_copies():
    from not_flower.evaluation.reference_models import STYLED, STYLED_MISLABELLED
    from not_flower.task.mislabel import invert

    cfg = parse_run_config({**scenario_config("memorise", target=0), "mia.reference-models": 2})
    got = client_data(data_spec(cfg), 0, 4)
    clean = client_data(data_spec(parse_run_config({"partitioner": "iid"})), 0, 4)
    np.testing.assert_allclose(got.x_train, invert(clean.x_train))
    wrong = got.mislabelled
    assert len(wrong) == round(MISLABEL_FRACTION * len(got.y_train))
    assert (got.y_train[wrong] != clean.y_train[wrong]).all()
    u = build_universe(data_spec(cfg), 4)
    target = u.kind[: u.offsets[1]]
    assert (target[wrong] == STYLED_MISLABELLED).sum() == len(wrong)
    assert (target == STYLED).sum() == len(got.y_train) - len(wrong)
    held = u.kind[u.heldout]
    assert (held == STYLED_MISLABELLED).sum() == len(wrong)
    assert (held == STYLED).sum() == len(got.y_train) - len(wrong)
    test = load_dataset("digits")
    copies = held == STYLED_MISLABELLED
    for x, y in zip(u.x[u.heldout][copies][:10], u.y[u.heldout][copies][:10]):
        match = np.flatnonzero(np.isclose(test.x_test, invert(x)).all(axis=(1, 2, 3)))
        assert len(match) >= 1 and (test.y_test[match] != y).all()


def test_the_scenarios_are_offered_by_the_comparison():
    from not_flower.experiments.plan import SCENARIOS

    assert {"mislabel", "style", "memorise"} <= set(SCENARIOS)
