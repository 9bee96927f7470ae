"""End to end through Flower's simulation engine (Ray): real ClientApps, real training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord

from not_flower.app.specs import data_spec
from not_flower.common.config import parse_run_config
from not_flower.common.store import load_checkpoint
from not_flower.experiments.simulation import simulate
from not_flower.task.models import build_model
from not_flower.task.training import client_data, dataset_for, evaluate

pytestmark = pytest.mark.e2e  # starts Flower / Ray / processes: see tests/conftest.py

N = 4
TARGET = 1


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    config = {
        "out-dir": str(out),
        "num-train-rounds": 6,
        "recovery.rounds": 4,
        "unlearn.clients": str(TARGET),
        "lr": 0.02,
        "local-epochs": 2,
        "batch-size": 16,
        "recovery.run-to-cap": True,  # fixed length: the stopping rule reports, never ends it
    }
    return out, config, simulate(config, num_supernodes=N)


def test_target_trains_before_and_never_after_the_request(run):
    _, _, results = run
    phases = [r["phase"] for r in results["rounds"]]
    assert phases == ["init"] + ["train"] * 6 + ["recovery"] * 4
    for row in results["rounds"][1:7]:
        assert row["participants"] == [0, 1, 2, 3]
    for row in results["rounds"][7:]:
        assert row["participants"] == [0, 2, 3]  # every non-target, never the target
        assert TARGET not in row["evaluated"]
    request = results["requests"][0]
    assert request["round"] == 7 and request["partition_ids"] == [TARGET]
    assert request["request"]["rule"] == {"by": "partition-id", "values": ["1"]}
    assert request["layers"] == ["conv1"] and request["keys"] == ["conv1.weight", "conv1.bias"]
    assert len(results["excluded_node_ids"]) == 1


def test_numbers_come_from_real_training(run):
    out, config, results = run
    acc = [r["test_acc"] for r in results["rounds"]]
    assert acc[0] < 0.2  # untrained
    assert acc[6] > 0.6  # six rounds of FedAvg on digits learn
    models = results["models"]
    assert models["negated"]["test_acc"] <= 0.15 < models["original"]["test_acc"]
    assert models["recovered"]["test_acc"] > models["negated"]["test_acc"] + 0.3
    # the last round's centralized accuracy is the recovered model's
    assert models["recovered"]["test_acc"] == pytest.approx(acc[-1])
    # client-side training really happened: losses reported by the clients
    assert all(r["train_loss"] > 0 for r in results["rounds"][1:])

    # recompute from the checkpoints: the numbers are the saved models' numbers
    cfg = parse_run_config(config)
    data = dataset_for(data_spec(cfg))
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    forget = client_data(data_spec(cfg), TARGET, N)
    for name, ckpt in (
        ("original", "checkpoint-original.pt"),
        ("recovered", "checkpoint-final.pt"),
    ):
        state, meta = load_checkpoint(out / ckpt)
        model.load_state_dict(state)
        assert evaluate(model, data.x_test, data.y_test)[0] == pytest.approx(
            models[name]["test_acc"]
        )
        assert evaluate(model, forget.x_train, forget.y_train)[0] == pytest.approx(
            models[name]["forget_acc"]
        )
    assert meta["round"] == 10 and meta["phase"] == "recovered"

    # negated = original with conv1 times -1, nothing else changed
    original, _ = load_checkpoint(out / "checkpoint-original.pt")
    from strategies.negation import negate

    negated = negate(ArrayRecord(original), ["conv1.weight", "conv1.bias"]).to_torch_state_dict()
    model.load_state_dict(negated)
    assert evaluate(model, data.x_test, data.y_test)[0] == pytest.approx(
        models["negated"]["test_acc"]
    )
    assert torch.equal(negated["fc2.weight"], original["fc2.weight"])


def test_results_json_is_written_and_complete(run):
    out, _, results = run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == results
    assert on_disk["config"]["unlearn.clients"] == str(TARGET)
    assert on_disk["num_partitions"] == N
    assert set(on_disk["models"]) >= {"original", "negated", "recovered"}
    assert on_disk["method"] == "not" and on_disk["final"] == "recovered"
    for m in on_disk["models"].values():
        assert set(m) >= {"test_acc", "test_loss", "forget_acc", "retain_acc", "mia_efficacy"}
    # costs are counted from the real messages: 4 recovery rounds, 3 clients each, the
    # model goes down for train and evaluate and comes back up from train
    # (serialized Array payloads: the tensor bytes plus each Array's small header)
    from strategies.not_strategy import arrayrecord_nbytes

    state = build_model("cnn", (1, 8, 8), 10).state_dict()
    model_bytes = arrayrecord_nbytes(ArrayRecord(state))
    assert 0 < model_bytes - sum(t.numel() * 4 for t in state.values()) < 200 * len(state)
    costs = on_disk["costs"]
    assert costs["unlearning_fixed_length"]["rounds"] == 4
    assert costs["unlearning_fixed_length"]["bytes_down"] == 4 * 2 * 3 * model_bytes
    assert costs["unlearning_fixed_length"]["bytes_up"] == 4 * 3 * model_bytes
    assert costs["train"]["bytes_down"] == 6 * 2 * 4 * model_bytes
    assert costs["unlearning_fixed_length"]["client_seconds"] > 0
    stop = on_disk["stopping"]
    assert stop["cap"] == 4 and 0 < stop["reference_val_acc"] <= 1
    if stop["chosen_round"] is not None:
        assert costs["unlearning"]["rounds"] == stop["chosen_recovery_rounds"]
        assert "stopped" in on_disk["models"]
    sizes = [len(client_data(data_spec(parse_run_config(run[1])), p, N).x_train) for p in range(N)]
    assert sum(sizes) > 1000 and np.all(np.array(sizes) > 200)


@pytest.mark.parametrize("method", ["ft", "retrain"])
def test_reference_methods_run_through_the_same_app(method, tmp_path):
    config = {
        "out-dir": str(tmp_path),
        "method": method,
        "num-train-rounds": 3,
        "recovery.rounds": 2,
        "unlearn.clients": "0",
        "lr": 0.02,
        "recovery.run-to-cap": True,
    }
    results = simulate(config, num_supernodes=3)
    rows = results["rounds"]
    if method == "retrain":
        assert results["final"] == "retrained" and "original" not in results["models"]
        assert [r["phase"] for r in rows] == ["init", "retrain", "retrain", "retrain"]
        assert all(r["participants"] == [1, 2] for r in rows[1:])  # never the target
        assert results["costs"]["unlearning"]["rounds"] == 3
        assert results["costs"]["train"]["rounds"] == 0
    else:
        assert results["final"] == "recovered" and "negated" not in results["models"]
        assert [r["phase"] for r in rows] == ["init"] + ["train"] * 3 + ["recovery"] * 2
        assert all(r["participants"] == [1, 2] for r in rows[4:])
        assert results["requests"][0]["layers"] == []  # FT negates nothing
        assert results["costs"]["unlearning_fixed_length"]["rounds"] == 2
    assert results["costs"]["storage_bytes"] == 0


def test_unlearning_from_a_checkpoint_after_training_finished(tmp_path):
    """The production path: training is over; a later run loads its checkpoint and unlearns."""
    first = simulate(
        {
            "out-dir": str(tmp_path / "train"),
            "num-train-rounds": 3,
            "recovery.rounds": 0,
            "unlearn.clients": "",
            "lr": 0.02,
        },
        num_supernodes=3,
    )
    assert first["requests"] == [] and first["final"] == "original"
    ckpt = first["checkpoints"]["final"]
    second = simulate(
        {
            "out-dir": str(tmp_path / "unlearn"),
            "init-checkpoint": ckpt,
            "num-train-rounds": 0,
            "recovery.rounds": 2,
            "unlearn.clients": "1",
            "lr": 0.02,
            "recovery.run-to-cap": True,
        },
        num_supernodes=3,
    )
    assert second["requests"][0]["round"] == 1
    assert [r["participants"] for r in second["rounds"][1:]] == [[0, 2], [0, 2]]
    # "original" of the unlearning run is exactly the trained model it loaded
    assert second["models"]["original"]["test_acc"] == first["models"]["original"]["test_acc"]
    assert second["rounds"][0]["test_acc"] == first["rounds"][-1]["test_acc"]


def test_bad_init_checkpoint_fails_before_training(tmp_path):
    from not_flower.app.server_app import load_initial_checkpoint
    from not_flower.common.store import save_checkpoint

    model = build_model("cnn", (1, 8, 8), 10)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_initial_checkpoint(str(tmp_path / "nope.pt"), model)
    other = build_model("mlp", (1, 8, 8), 10)
    save_checkpoint(tmp_path / "mlp.pt", ArrayRecord(other.state_dict()), {})
    with pytest.raises(ValueError, match="does not fit the model: missing keys"):
        load_initial_checkpoint(str(tmp_path / "mlp.pt"), model)
    wide = build_model("cnn", (3, 32, 32), 10)
    save_checkpoint(tmp_path / "wide.pt", ArrayRecord(wide.state_dict()), {})
    with pytest.raises(ValueError, match=r"tensor 'conv1.weight' has shape \(32, 3, 3, 3\)"):
        load_initial_checkpoint(str(tmp_path / "wide.pt"), model)
    (tmp_path / "trunc.pt").write_bytes((tmp_path / "wide.pt").read_bytes()[:100])
    with pytest.raises(ValueError, match="cannot be read"):
        load_initial_checkpoint(str(tmp_path / "trunc.pt"), model)


def test_record_of_forgetting_matches_the_checkpoints(run):
    from not_flower.audit.cli import sha256_arrays, verify_log

    out, _, results = run
    record = json.loads((out / "unlearning-record.json").read_text())
    original, _ = load_checkpoint(out / "checkpoint-original.pt")
    final, _ = load_checkpoint(out / "checkpoint-final.pt")
    hashes = record["model_sha256"]
    assert hashes["before_negation"] == sha256_arrays(original)
    assert hashes["after_recovery"] == sha256_arrays(final)
    from strategies.negation import negate

    assert hashes["after_negation"] == sha256_arrays(
        negate(original, ["conv1.weight", "conv1.bias"])
    )
    assert record["applied_round"] == 7 and record["layers_negated"] == ["conv1"]
    assert [r["round"] for r in record["recovery_rounds"]] == [7, 8, 9, 10]
    for r in record["recovery_rounds"]:
        assert sorted(p["partition_id"] for p in r["participants"]) == [0, 2, 3]
    assert record["request"]["requested_by"] == "operator (run config)"
    ok, problems = verify_log(out / "unlearning-log.jsonl")
    assert ok and problems == []
    assert (
        results["audit"][0]["head"]
        == json.loads((out / "unlearning-log.jsonl").read_text().splitlines()[-1])["hash"]
    )
