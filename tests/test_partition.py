"""Tests for not_flower.task.partition."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from not_flower.task.partition import (
    PARTITIONERS,
    dirichlet_partition,
    iid_partition,
    partition,
    train_val_split,
)

LABELS = np.repeat(np.arange(10), 100)  # 1000 samples, 10 balanced classes
np.random.default_rng(0).shuffle(LABELS)


def assert_valid(parts: list[np.ndarray], num_samples: int) -> None:
    """Disjoint, complete, sorted int64."""
    for p in parts:
        assert p.dtype == np.int64 and p.ndim == 1
        assert np.all(np.diff(p) > 0)  # sorted, no duplicates within
    allidx = np.concatenate(parts)
    assert len(allidx) == num_samples
    np.testing.assert_array_equal(np.sort(allidx), np.arange(num_samples))


def dominant_share(parts, labels, top: int = 2) -> np.ndarray:
    """Share of each partition covered by its `top` most frequent classes."""
    shares = []
    for p in parts:
        counts = np.sort(np.bincount(labels[p], minlength=10))[::-1]
        shares.append(counts[:top].sum() / counts.sum())
    return np.array(shares)


# --------------------------------------------------------------------------- iid


def test_iid_sizes_cover_and_determinism():
    parts = iid_partition(103, 10, seed=3)
    assert_valid(parts, 103)
    sizes = sorted(len(p) for p in parts)
    assert sizes == [10] * 7 + [11] * 3
    again = iid_partition(103, 10, seed=3)
    for a, b in zip(parts, again):
        np.testing.assert_array_equal(a, b)


def test_iid_different_seeds_differ():
    a = iid_partition(100, 4, seed=0)
    b = iid_partition(100, 4, seed=1)
    assert any(not np.array_equal(x, y) for x, y in zip(a, b))


def test_iid_single_partition_and_one_per_sample():
    (only,) = iid_partition(7, 1, seed=0)
    np.testing.assert_array_equal(only, np.arange(7))
    parts = iid_partition(5, 5, seed=0)
    assert all(len(p) == 1 for p in parts)
    assert_valid(parts, 5)


@pytest.mark.parametrize("bad", [0, -1, 11])
def test_iid_bad_num_partitions(bad):
    with pytest.raises(
        ValueError, match=rf"num_partitions must be between 1 and .*\(10\), got {bad}"
    ):
        iid_partition(10, bad, seed=0)


# --------------------------------------------------------------------------- dirichlet


def test_dirichlet_valid_deterministic_min_size():
    parts = dirichlet_partition(LABELS, 10, alpha=0.5, seed=7)
    assert len(parts) == 10
    assert_valid(parts, len(LABELS))
    assert min(len(p) for p in parts) >= 2
    again = dirichlet_partition(LABELS, 10, alpha=0.5, seed=7)
    for a, b in zip(parts, again):
        np.testing.assert_array_equal(a, b)
    other = dirichlet_partition(LABELS, 10, alpha=0.5, seed=8)
    assert any(not np.array_equal(x, y) for x, y in zip(parts, other))


def test_dirichlet_min_partition_size_enforced():
    parts = dirichlet_partition(LABELS, 20, alpha=0.3, seed=0, min_partition_size=15)
    assert min(len(p) for p in parts) >= 15
    assert_valid(parts, len(LABELS))


def test_small_alpha_skewed_large_alpha_uniform():
    skewed = dirichlet_partition(LABELS, 10, alpha=0.1, seed=0)
    uniform = dirichlet_partition(LABELS, 10, alpha=100.0, seed=0)
    s_skew = dominant_share(skewed, LABELS)
    s_unif = dominant_share(uniform, LABELS)
    # alpha=0.1: most partitions are >= 70 % made of their 2 main classes
    assert np.mean(s_skew >= 0.7) >= 0.7, s_skew
    # alpha=100: close to the uniform 2/10 share everywhere
    assert np.all(s_unif <= 0.35), s_unif
    # and partition sizes are near equal (1000 / 10 each)
    assert all(70 <= len(p) <= 130 for p in uniform)
    # per-partition label histogram close to uniform in total-variation distance
    for p in uniform:
        hist = np.bincount(LABELS[p], minlength=10) / len(p)
        assert 0.5 * np.abs(hist - 0.1).sum() < 0.15


def test_dirichlet_no_positional_bias_on_small_classes():
    """Flooring cumulative proportions would leave partitions 0, 1, 3 always empty here."""
    labels = np.repeat(np.arange(10), 2)  # 10 classes of 2 samples
    mean_sizes = np.mean(
        [
            [len(p) for p in dirichlet_partition(labels, 5, 100.0, seed, min_partition_size=0)]
            for seed in range(60)
        ],
        axis=0,
    )
    assert np.all(np.abs(mean_sizes - 4.0) < 0.6), mean_sizes


def test_dirichlet_accepts_list_and_noncontiguous_labels():
    labels = [3, 3, 7, 7, 7, 9, 9, 3, 9, 7, 3, 9]
    parts = dirichlet_partition(labels, 3, alpha=1.0, seed=0, min_partition_size=1)
    assert_valid(parts, len(labels))


@pytest.mark.parametrize("alpha", [-1.0, 0.0, float("nan"), float("inf")])
def test_dirichlet_bad_alpha_names_value(alpha):
    with pytest.raises(ValueError, match=rf"dirichlet-alpha must be > 0, got {alpha}"):
        dirichlet_partition(LABELS, 5, alpha=alpha, seed=0)


def test_dirichlet_bad_alpha_message_exact():
    with pytest.raises(ValueError) as err:
        partition(LABELS, 5, "dirichlet", alpha=-1)
    assert str(err.value) == "dirichlet-alpha must be > 0, got -1.0"


@pytest.mark.parametrize("bad", [0, 1001])
def test_dirichlet_bad_num_partitions(bad):
    with pytest.raises(ValueError, match=rf"got {bad}"):
        dirichlet_partition(LABELS, bad, alpha=1.0, seed=0)


def test_dirichlet_impossible_min_size():
    with pytest.raises(ValueError, match="at least 6 samples with only 10 samples"):
        dirichlet_partition(np.zeros(10, dtype=int), 2, alpha=1.0, seed=0, min_partition_size=6)


def test_dirichlet_gives_up_with_clear_error():
    # 1 class, 50 partitions, tiny alpha: nearly all mass goes to one partition every try
    with pytest.raises(ValueError, match=r"after 100 tries.*increase dirichlet-alpha"):
        dirichlet_partition(np.zeros(200, dtype=int), 50, alpha=0.01, seed=0, min_partition_size=2)


# --------------------------------------------------------------------------- dispatch


def test_partition_dispatch():
    assert PARTITIONERS == ("iid", "dirichlet")
    for a, b in zip(partition(LABELS, 4, "iid", seed=2), iid_partition(len(LABELS), 4, seed=2)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(
        partition(LABELS, 4, "dirichlet", alpha=0.3, seed=2),
        dirichlet_partition(LABELS, 4, alpha=0.3, seed=2),
    ):
        np.testing.assert_array_equal(a, b)


def test_partition_unknown_method_lists_allowed():
    with pytest.raises(ValueError) as err:
        partition(LABELS, 4, "pathological")
    assert "'pathological'" in str(err.value) and "iid, dirichlet" in str(err.value)


# --------------------------------------------------------------------------- train/val


def test_train_val_split_sizes_and_determinism():
    idx = np.arange(100, 200)
    train, val = train_val_split(idx, 0.1, seed=0)
    assert len(val) == 10 and len(train) == 90
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(idx)
    assert train.dtype == np.int64 and np.all(np.diff(train) > 0)
    t2, v2 = train_val_split(idx, 0.1, seed=0)
    np.testing.assert_array_equal(train, t2)
    np.testing.assert_array_equal(val, v2)
    _, v3 = train_val_split(idx, 0.1, seed=1)
    assert not np.array_equal(val, v3)


def test_train_val_split_edge_cases():
    train, val = train_val_split(np.arange(10), 0.0, seed=0)
    assert len(val) == 0 and len(train) == 10
    train, val = train_val_split(np.array([5]), 0.5, seed=0)  # keeps the only sample for training
    assert train.tolist() == [5] and len(val) == 0
    train, val = train_val_split(np.arange(4), 0.05, seed=0)  # rounds to 0, but at least 1 val
    assert len(val) == 1 and len(train) == 3
    train, val = train_val_split(np.arange(4), 0.99, seed=0)  # at least 1 train
    assert len(train) == 1 and len(val) == 3


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_train_val_split_bad_fraction(bad):
    with pytest.raises(ValueError, match=rf"val-fraction must be in \[0, 1\), got {bad}"):
        train_val_split(np.arange(10), bad, seed=0)


def test_train_val_split_empty():
    with pytest.raises(ValueError, match="non-empty"):
        train_val_split(np.array([], dtype=np.int64), 0.1, seed=0)


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(
    num_samples=st.integers(1, 300),
    data=st.data(),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_iid_cover_disjoint(num_samples, data, seed):
    k = data.draw(st.integers(1, num_samples))
    parts = iid_partition(num_samples, k, seed)
    assert len(parts) == k
    assert_valid(parts, num_samples)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 9), min_size=20, max_size=300),
    data=st.data(),
    alpha=st.floats(0.5, 100.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_dirichlet_cover_disjoint(labels, data, alpha, seed):
    labels = np.array(labels)
    k = data.draw(st.integers(1, min(5, len(labels) // 4)))
    parts = dirichlet_partition(labels, k, alpha, seed, min_partition_size=1)
    assert len(parts) == k
    assert_valid(parts, len(labels))
    assert min(len(p) for p in parts) >= 1


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 200),
    frac=st.floats(0.0, 0.99),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_train_val_split(n, frac, seed):
    idx = np.arange(n) * 3 + 1
    train, val = train_val_split(idx, frac, seed)
    assert len(train) >= 1
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), idx)
