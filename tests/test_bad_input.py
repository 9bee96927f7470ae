"""Bad input: each case fails with an error naming the bad value and what
is allowed, and a failed write leaves what was on disk untouched.

Covered elsewhere, not repeated here:

* unknown target:
  ``tests/test_strategy.py::test_unknown_target_is_an_error_naming_value_and_choices``
  (``UnlearningError`` naming ``partition-id=42`` and the values the connected nodes have);
* a request file naming no connected node, rejected without stopping training:
  ``tests/test_requests.py::test_request_folder_applies_valid_and_rejects_bad_without_stopping``.
"""

from __future__ import annotations

import io
import json

import pytest
import torch
from flwr.app import ArrayRecord

from not_flower.app.server_app import load_initial_checkpoint
from not_flower.common import store
from not_flower.common.config import (
    DATASETS,
    METHODS,
    MODELS,
    PARTITIONERS,
    ConfigError,
    parse_run_config,
)
from not_flower.common.store import load_checkpoint, save_checkpoint, write_json
from not_flower.task.data import load_dataset
from not_flower.task.models import build_model
from strategies import NoT, UnlearningError
from strategies.negation import NegationError, plan_negation
from tests.test_strategy import PLAN, make_grid, node_of, run


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny tensors: one intra-op thread is much faster than several on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------ targets


def test_every_client_targeted_is_refused_naming_them_and_what_is_needed():
    grid = make_grid(n=3, with_query=True)
    ids = sorted(node_of(grid, p) for p in range(3))
    strategy = NoT(PLAN, min_train_nodes=1)
    strategy.request_unlearning("0,1,2", at_round=2)
    with pytest.raises(UnlearningError) as err:
        run(strategy, grid, rounds=2)
    message = str(err.value)
    assert "would exclude every connected node" in message
    assert f"3 connected, targets {ids}" in message  # the bad value: all three node ids
    assert "at least one non-target node is needed to recover" in message  # what is allowed
    assert strategy.excluded_node_ids == set()  # nothing half-applied


# ----------------------------------------------------------------------- selectors


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return build_model("cnn", (1, 8, 8), 10)


X = torch.zeros(1, 1, 8, 8)
LAYERS = "'conv1', 'conv2', 'fc1', 'fc2'"


@pytest.mark.parametrize("selector", ["conv3", "layer1.*", "Conv1"])
def test_selector_matching_nothing_lists_the_layers(cnn, selector):
    with pytest.raises(NegationError) as err:
        plan_negation(cnn, X, selector)
    assert str(err.value) == (
        f"layer selector {selector!r} matches no layer; available layers in forward order: {LAYERS}"
    )


def test_selector_index_out_of_range_gives_the_valid_range(cnn):
    with pytest.raises(
        NegationError,
        match=r"layer index 4 is out of range: valid indices are "
        r"-4\.\.3 for the 4 layers in forward order",
    ):
        plan_negation(cnn, X, 4)


@pytest.mark.parametrize("selector", ["fc2", -1, "conv1, fc2", "fc*"])
def test_output_layer_is_refused(cnn, selector):
    with pytest.raises(
        NegationError,
        match=r"^'fc2' is the output layer; NoT never negates the "
        r"output layer \(choose earlier layers, e\.g\. 'first'\)",
    ):
        plan_negation(cnn, X, selector)


@pytest.mark.parametrize(
    "selector,first,second",
    [
        ("conv1, conv2", "conv1", "conv2"),
        (["fc1", "conv1"], "conv1", "fc1"),
        ("conv*", "conv1", "conv2"),
    ],
)
def test_non_antichain_is_refused(cnn, selector, first, second):
    with pytest.raises(
        NegationError,
        match=f"^'{first}' feeds '{second}': negated layers must "
        r"form an antichain \(no selected layer upstream of another\)",
    ):
        plan_negation(cnn, X, selector)


# --------------------------------------------------------- unknown names, bad values


@pytest.mark.parametrize(
    "key,bad,allowed",
    [
        ("dataset", "imagenet", DATASETS),
        ("model", "gpt2", MODELS),
        ("method", "sisa", METHODS),
        ("partitioner", "shards", PARTITIONERS),
    ],
)
def test_unknown_choice_in_run_config(key, bad, allowed):
    with pytest.raises(ConfigError) as err:
        parse_run_config({key: bad})
    assert str(err.value) == f"unknown {key} {bad!r}; choose one of: {', '.join(allowed)}"


def test_unknown_dataset_in_loader():
    with pytest.raises(ValueError) as err:
        load_dataset("imagenet")
    assert str(err.value) == f"unknown dataset 'imagenet'; choose one of: {', '.join(DATASETS)}"


def test_unknown_model_in_builder():
    with pytest.raises(ValueError) as err:
        build_model("gpt2", (1, 8, 8), 10)
    assert str(err.value) == f"unknown model 'gpt2'; choose one of: {', '.join(MODELS)}"


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("num-train-rounds", -3, "num-train-rounds must be >= 1, got -3"),
        ("recovery.rounds", -1, "recovery.rounds must be >= 0, got -1"),
        ("local-epochs", 0, "local-epochs must be >= 1, got 0"),
        ("dirichlet-alpha", 0, "dirichlet-alpha must be > 0, got 0.0"),
        ("dirichlet-alpha", -0.5, "dirichlet-alpha must be > 0, got -0.5"),
        ("dirichlet-alpha", "inf", "dirichlet-alpha must be a finite number, got 'inf'"),
        ("fraction-train", 0.0, "fraction-train must be in (0, 1], got 0.0"),
        ("fraction-train", -0.2, "fraction-train must be in (0, 1], got -0.2"),
        ("fraction-train", 1.01, "fraction-train must be in (0, 1], got 1.01"),
        ("fraction-evaluate", 2, "fraction-evaluate must be in [0, 1], got 2.0"),
        ("lr", 0, "lr must be > 0, got 0.0"),
    ],
)
def test_run_config_value_out_of_range(key, value, message):
    with pytest.raises(ConfigError) as err:
        parse_run_config({key: value})
    assert str(err.value) == message


# ---------------------------------------------------------------------- checkpoints


@pytest.fixture()
def good_ckpt(tmp_path, cnn):
    return save_checkpoint(
        tmp_path / "good.pt", ArrayRecord(cnn.state_dict()), {"model": "cnn", "dataset": "digits"}
    )


def test_missing_checkpoint(tmp_path, cnn):
    path = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match=f"^checkpoint {str(path)!r} does not exist$"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_initial_checkpoint(str(path), cnn)


@pytest.mark.parametrize(
    "keep",
    [lambda n: 0, lambda n: 10, lambda n: n // 2, lambda n: n - 1],
    ids=["empty", "10-bytes", "half", "all-but-one-byte"],
)
def test_truncated_checkpoint(tmp_path, good_ckpt, cnn, keep):
    data = good_ckpt.read_bytes()
    bad = tmp_path / "trunc.pt"
    bad.write_bytes(data[: keep(len(data))])
    for load in (load_checkpoint, lambda p: load_initial_checkpoint(str(p), cnn)):
        with pytest.raises(ValueError) as err:
            load(bad)
        assert f"checkpoint {str(bad)!r} cannot be read" in str(err.value)
        assert "is it truncated?" in str(err.value)


@pytest.mark.parametrize("blob", [[1, 2, 3], {"weights": {}}, torch.zeros(3)])
def test_foreign_file_is_not_a_checkpoint(tmp_path, blob):
    path = tmp_path / "foreign.pt"
    torch.save(blob, path)
    with pytest.raises(
        ValueError,
        match=r"is not a not-flower checkpoint \(expected a dict with "
        r"'state_dict' and 'meta'\)",
    ):
        load_checkpoint(path)


def test_checkpoint_from_another_model(tmp_path, cnn):
    mlp = build_model("mlp", (1, 8, 8), 10)
    path = save_checkpoint(tmp_path / "mlp.pt", ArrayRecord(mlp.state_dict()), {})
    with pytest.raises(ValueError) as err:
        load_initial_checkpoint(str(path), cnn)
    message = str(err.value)
    assert (
        "does not fit the model" in message and "is it from another model or data set?" in message
    )
    assert "missing keys ['conv1.bias', 'conv1.weight'" in message  # what the model needs
    assert "unexpected keys ['fc3.bias', 'fc3.weight']" in message  # what the file has


def test_checkpoint_with_other_shapes(tmp_path, cnn):
    other = build_model("cnn", (3, 8, 8), 100)
    path = save_checkpoint(tmp_path / "rgb.pt", ArrayRecord(other.state_dict()), {})
    with pytest.raises(
        ValueError,
        match=r"tensor 'conv1.weight' has shape \(32, 3, 3, 3\) "
        r"\(torch.float32\), the model needs \(32, 1, 3, 3\)",
    ):
        load_initial_checkpoint(str(path), cnn)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_checkpoint_holding_nan_or_inf(tmp_path, cnn, value):
    state = {k: v.clone() for k, v in cnn.state_dict().items()}
    state["fc1.weight"][3, 5] = value
    path = tmp_path / "nan.pt"
    torch.save({"state_dict": state, "meta": {}}, path)  # as a crashed run might have
    for load in (load_checkpoint, lambda p: load_initial_checkpoint(str(p), cnn)):
        with pytest.raises(
            ValueError, match=f"checkpoint {str(path)!r}: tensor 'fc1.weight' holds NaN or inf"
        ):
            load(path)


# ------------------------------------------------- nothing on disk is overwritten


@pytest.fixture()
def out_dir(tmp_path, cnn):
    folder = tmp_path / "out"
    save_checkpoint(folder / "checkpoint-original.pt", ArrayRecord(cnn.state_dict()), {"round": 5})
    write_json(folder / "results.json", {"method": "not", "rounds": [1, 2, 3]})
    return folder


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_failed_checkpoint_serialisation_keeps_the_old_one(out_dir, cnn, monkeypatch):
    before = snapshot(out_dir)
    real_save = torch.save

    def save_half_then_fail(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        if isinstance(f, io.BytesIO):
            f.truncate(f.tell() // 2)
        raise RuntimeError("serialisation failed mid-way")

    monkeypatch.setattr(store.torch, "save", save_half_then_fail)
    negated = ArrayRecord({k: -v for k, v in cnn.state_dict().items()})
    with pytest.raises(RuntimeError, match="mid-way"):
        save_checkpoint(out_dir / "checkpoint-original.pt", negated, {"round": 6})
    assert snapshot(out_dir) == before  # byte-identical, no temporary file left


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_failed_checkpoint_write_keeps_the_old_one(out_dir, cnn, monkeypatch, step):
    before = snapshot(out_dir)

    def fail(*_args, **_kwargs):
        raise OSError(f"{step}: no space left on device")

    monkeypatch.setattr(store.os, step, fail)
    with pytest.raises(OSError, match="no space left"):
        save_checkpoint(out_dir / "checkpoint-original.pt", ArrayRecord(cnn.state_dict()), {})
    with pytest.raises(OSError, match="no space left"):
        write_json(out_dir / "results.json", {"method": "ft"})
    monkeypatch.undo()
    assert snapshot(out_dir) == before


def test_failed_json_serialisation_keeps_the_old_results(out_dir):
    before = snapshot(out_dir)
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json(out_dir / "results.json", {"method": "not", "model": object()})
    assert snapshot(out_dir) == before
    assert json.loads((out_dir / "results.json").read_text())["rounds"] == [1, 2, 3]
