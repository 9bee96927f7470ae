"""LiRA on the departing client's canaries: the universe's canaries and a known case.

A client that plants canaries (``canary.clients``; random black-and-white pixels with random
labels, :mod:`not_flower.task.canary`) gives the per-example attack samples nothing else in
the federation resembles. The universe marks them :data:`CANARY` and holds held-out
canaries drawn the same way from a stream of their own; the harness then reports LiRA on
the canaries alone (``lira_canary_*``). On a known case, a model trained on the canaries
is called a member on most of them at 1 % FPR, a model trained without them on about 1 %.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from not_flower.app.specs import data_spec
from not_flower.common.config import parse_run_config
from not_flower.evaluation.reference_models import (
    CANARY,
    CLEAN,
    HELDOUT_CANARIES,
    MembershipHarness,
    ReferenceSpec,
    build_universe,
)
from not_flower.experiments.plan import CANARY_COUNT, SCENARIOS, scenario_config
from not_flower.task.canary import client_canary_seed, heldout_canary_seed
from not_flower.task.models import build_model
from not_flower.task.training import client_canaries, client_data, train

PARTITIONS = 4


def _spec(**extra):
    return data_spec(parse_run_config({**scenario_config("canary", target=0), **extra}))


def test_the_canary_scenario_plants_canaries_on_the_target_only():
    assert "canary" in SCENARIOS
    cfg = scenario_config("canary", target=2)
    assert cfg["canary.clients"] == "2" and cfg["unlearn.clients"] == "2"
    assert cfg["canary.count"] == CANARY_COUNT == 32 and cfg["partitioner"] == "iid"


def test_universe_marks_the_planted_canaries_and_holds_held_out_ones():
    spec = _spec()
    u = build_universe(spec, PARTITIONS)
    target = client_data(spec, 0, PARTITIONS)
    kinds = u.kind[: u.offsets[1]]
    assert (kinds == CANARY).sum() == CANARY_COUNT
    np.testing.assert_array_equal(np.flatnonzero(kinds == CANARY), target.canaries)
    assert (u.kind[u.offsets[1] : u.offsets[-1]] == CANARY).sum() == 0  # the others: none
    held = u.kind[u.heldout] == CANARY
    assert held.sum() == HELDOUT_CANARIES
    x_held = u.x[u.heldout][held]
    assert set(np.unique(x_held)) == {0.0, 1.0}  # drawn the way the client draws its own
    assert (u.kind[u.heldout][~held] == CLEAN).all()
    # neither the client's in- nor its out-canaries: a stream of their own
    own = client_canaries(spec, 0)
    for kept in (own.x_in, own.x_out):
        assert not (x_held[:, None] == kept[None]).all(axis=(2, 3, 4)).any()
    assert heldout_canary_seed(0) not in {client_canary_seed(0, p) for p in range(1000)}
    # the universe of the attack before canaries were marked
    old = build_universe(spec, PARTITIONS, altered_heldout=False)
    assert not (old.kind == CANARY).any() and len(old.y) == len(u.y) - HELDOUT_CANARIES


def test_more_planted_canaries_than_the_default_give_as_many_held_out():
    u = build_universe(_spec(**{"canary.clients": "0,1", "canary.count": 150}), PARTITIONS)
    assert (u.kind[: u.offsets[-1]] == CANARY).sum() == 300
    assert (u.kind[u.heldout] == CANARY).sum() == 300


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """The harness of the canary scenario (4 clients, target 0, 32 canaries) with 8
    reference MLPs of 30 epochs, cached in a temporary folder."""
    spec = _spec()
    ref = ReferenceSpec(
        num_models=8,
        epochs=30,
        cache_dir=str(tmp_path_factory.mktemp("mia")),
        model="mlp",
        batch_size=32,
        lr=0.1,
    )
    h = MembershipHarness(spec, ref)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: threads only contend
    try:
        h.set_forget(PARTITIONS, {0})
    finally:
        torch.set_num_threads(threads)
    return h


def _target_model(harness, *, with_canaries: bool):
    """An MLP trained like a reference model on every client's data, the target's
    canaries included or left out."""
    u = harness.universe
    keep = np.zeros(len(u.y), dtype=bool)
    keep[: u.offsets[-1]] = True
    if not with_canaries:
        keep &= u.kind != CANARY
    torch.manual_seed(100)
    model = build_model("mlp", (1, 8, 8), 10)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(
            model,
            u.x[keep],
            u.y[keep],
            epochs=30,
            batch_size=32,
            lr=0.1,
            momentum=0.9,
            seed=100,
            dev=torch.device("cpu"),
        )
    finally:
        torch.set_num_threads(threads)
    return model


def test_lira_on_the_canaries_tells_a_model_that_trained_on_them(harness):
    member = harness.metrics(_target_model(harness, with_canaries=True))
    nonmember = harness.metrics(_target_model(harness, with_canaries=False))
    print("member:", {k: round(v, 3) for k, v in member.items()})
    print("non-member:", {k: round(v, 3) for k, v in nonmember.items()})
    assert member["lira_canary_tpr_fpr1"] > 0.5
    assert member["lira_canary_auc"] > 0.9
    assert nonmember["lira_canary_tpr_fpr1"] <= 0.1
    assert 0.3 < nonmember["lira_canary_auc"] < 0.7
    # on the whole forget set (32 canaries among the target's samples) the attack is weaker
    assert member["lira_tpr_fpr1"] < member["lira_canary_tpr_fpr1"]
    info = harness.info()["universe"]
    assert info["heldout_canaries"] == HELDOUT_CANARIES


def test_no_canaries_in_the_forget_set_no_canary_keys(harness):
    harness_other = MembershipHarness(harness.spec, harness.reference_spec)
    harness_other.universe, harness_other.reference = harness.universe, harness.reference
    harness_other.mask = np.zeros(len(harness.universe.y), dtype=bool)
    harness_other.mask[harness.universe.offsets[1] : harness.universe.offsets[2]] = True
    got = harness_other.metrics(_target_model(harness, with_canaries=True))
    assert "lira_auc" in got and not any(k.startswith("lira_canary") for k in got)
