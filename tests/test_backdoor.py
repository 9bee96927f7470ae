from __future__ import annotations

import numpy as np
import pytest

from not_flower.app.specs import data_spec
from not_flower.task.backdoor import CORNERS, poison, stamp_trigger, triggered_test_set


def _images(n=4, c=3, h=5, w=6, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 0.5, (n, c, h, w)).astype(np.float32)


def _readonly(a):
    a = np.array(a)
    a.setflags(write=False)
    return a


@pytest.mark.parametrize(
    "corner, rows, cols",
    [
        ("top-left", slice(0, 2), slice(0, 2)),
        ("top-right", slice(0, 2), slice(4, 6)),
        ("bottom-left", slice(3, 5), slice(0, 2)),
        ("bottom-right", slice(3, 5), slice(4, 6)),
    ],
)
def test_stamp_trigger_sets_exactly_the_corner(corner, rows, cols):
    x = _readonly(_images())
    before = x.copy()
    out = stamp_trigger(x, size=2, value=1.0, corner=corner)
    np.testing.assert_array_equal(x, before)  # input untouched
    assert out is not x and out.shape == x.shape and out.dtype == x.dtype
    mask = np.zeros((5, 6), dtype=bool)
    mask[rows, cols] = True
    assert mask.sum() == 4
    assert np.all(out[:, :, mask] == 1.0)  # every channel, every image
    np.testing.assert_array_equal(out[:, :, ~mask], x[:, :, ~mask])
    assert out.flags.writeable


def test_stamp_trigger_default_is_bottom_right_2x2_and_value():
    x = np.zeros((1, 1, 3, 3))
    out = stamp_trigger(x, value=0.25)
    np.testing.assert_array_equal(out[0, 0], [[0, 0, 0], [0, 0.25, 0.25], [0, 0.25, 0.25]])
    full = stamp_trigger(x, size=3)
    assert np.all(full == 1.0)
    assert stamp_trigger(np.zeros((0, 1, 3, 3))).shape == (0, 1, 3, 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": 0}, r"size must be in 1\.\.5 .*got 0"),
        ({"size": 6}, r"size must be in 1\.\.5 .*got 6"),
        ({"size": 1.5}, "size must be an integer; got 1.5"),
        ({"corner": "centre"}, "corner must be one of .*got 'centre'"),
        ({"value": float("nan")}, "value must be a finite number; got nan"),
    ],
)
def test_stamp_trigger_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        stamp_trigger(_images(), **kwargs)


def test_stamp_trigger_needs_4d():
    with pytest.raises(ValueError, match=r"4-D .*\(3, 5, 6\)"):
        stamp_trigger(np.zeros((3, 5, 6)))


def test_corners_constant():
    assert set(CORNERS) == {"top-left", "top-right", "bottom-left", "bottom-right"}


def test_poison_picks_round_fraction_deterministically_and_relabels_only_those():
    n = 20
    x = _readonly(_images(n=n))
    y = _readonly(np.arange(n) % 4)
    x_new, y_new, idx = poison(x, y, fraction=0.33, target=3, seed=11)
    assert len(idx) == round(0.33 * n) == 7
    assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)
    assert 0 <= idx.min() and idx.max() < n
    # same seed -> same indices; other seed -> (here) other indices
    _, _, idx2 = poison(x, y, fraction=0.33, target=3, seed=11)
    _, _, idx3 = poison(x, y, fraction=0.33, target=3, seed=12)
    np.testing.assert_array_equal(idx, idx2)
    assert not np.array_equal(idx, idx3)
    # labels: exactly the poisoned ones changed to target
    others = np.setdiff1d(np.arange(n), idx)
    assert np.all(y_new[idx] == 3)
    np.testing.assert_array_equal(y_new[others], y[others])
    # images: poisoned ones stamped, others identical
    np.testing.assert_array_equal(x_new[idx], stamp_trigger(x[idx]))
    np.testing.assert_array_equal(x_new[others], x[others])
    # inputs untouched, outputs writable
    np.testing.assert_array_equal(y, np.arange(n) % 4)
    np.testing.assert_array_equal(x, _images(n=n))
    assert x_new.flags.writeable and y_new.flags.writeable


@pytest.mark.parametrize("fraction, k", [(0.0, 0), (1.0, 10), (0.25, 2), (0.35, 4), (0.5, 5)])
def test_poison_count_is_round_fraction_times_n(fraction, k):
    x = _images(n=10)
    y = np.zeros(10, dtype=np.int64)
    x_new, y_new, idx = poison(x, y, fraction=fraction, target=1, seed=0)
    assert len(idx) == k == round(fraction * 10)
    assert int((y_new == 1).sum()) == k
    if k == 0:
        np.testing.assert_array_equal(x_new, x)
    if k == 10:
        np.testing.assert_array_equal(idx, np.arange(10))


def test_poison_uses_trigger_options():
    x = np.zeros((4, 1, 4, 4))
    y = np.zeros(4, dtype=np.int64)
    x_new, _, idx = poison(
        x, y, fraction=1.0, target=1, seed=0, size=1, value=0.5, corner="top-left"
    )
    assert np.all(x_new[:, 0, 0, 0] == 0.5) and x_new.sum() == 4 * 0.5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fraction": -0.1}, r"fraction must be a number in \[0, 1\]; got -0.1"),
        ({"fraction": 1.5}, r"fraction must be a number in \[0, 1\]; got 1.5"),
        ({"fraction": float("nan")}, r"fraction .*got nan"),
        ({"target": -1}, "target must be >= 0; got -1"),
        ({"target": 1.0}, "target must be an integer class index; got 1.0"),
        ({"seed": -3}, "seed must be a non-negative integer; got -3"),
        ({"size": 9}, r"size must be in 1\.\.5 .*got 9"),
    ],
)
def test_poison_errors(kwargs, match):
    args = {"fraction": 0.5, "target": 1, "seed": 0, **kwargs}
    size = args.pop("size", 2)
    with pytest.raises(ValueError, match=match):
        poison(_images(n=4), np.zeros(4, dtype=int), size=size, **args)


def test_poison_label_shape_errors():
    with pytest.raises(ValueError, match="3 labels but there are 4 images"):
        poison(_images(n=4), np.zeros(3, dtype=int), 0.5, 1, 0)
    with pytest.raises(ValueError, match="integer class labels"):
        poison(_images(n=4), np.zeros(4), 0.5, 1, 0)


def test_triggered_test_set_excludes_target_class():
    x = _readonly(_images(n=6))
    y = _readonly(np.array([0, 2, 1, 2, 0, 1]))
    xt, yt = triggered_test_set(x, y, target=2)
    keep = np.array([0, 2, 4, 5])
    np.testing.assert_array_equal(yt, y[keep])
    assert not np.any(yt == 2)
    np.testing.assert_array_equal(xt, stamp_trigger(x[keep]))
    xt1, _ = triggered_test_set(x, y, target=2, size=1, corner="top-left", value=0.9)
    np.testing.assert_array_equal(xt1, stamp_trigger(x[keep], size=1, corner="top-left", value=0.9))
    # every image of the target class -> empty result
    xe, ye = triggered_test_set(x[:2], np.array([2, 2]), target=2)
    assert xe.shape == (0, 3, 5, 6) and ye.shape == (0,)
    with pytest.raises(ValueError, match="target must be >= 0; got -2"):
        triggered_test_set(x, y, target=-2)


def test_backdoor_trigger_size_reaches_the_poisoner_data():
    from not_flower.common.config import ConfigError, parse_run_config
    from not_flower.task.training import client_data

    keys = {"backdoor.clients": "0", "backdoor.fraction": 0.5}
    small = client_data(data_spec(parse_run_config(keys)), 0, 3)
    big = client_data(data_spec(parse_run_config({**keys, "backdoor.trigger-size": 3})), 0, 3)
    assert np.array_equal(small.poisoned, big.poisoned) and len(big.poisoned) > 0
    assert np.all(big.x_train[big.poisoned][:, :, -3:, -3:] == 1.0)
    assert not np.all(small.x_train[small.poisoned][:, :, -3:, -3:] == 1.0)
    assert np.all(small.x_train[small.poisoned][:, :, -2:, -2:] == 1.0)
    with pytest.raises(ConfigError, match="backdoor.trigger-size"):
        parse_run_config({"backdoor.trigger-size": 0})
