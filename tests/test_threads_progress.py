"""Threads chosen, progress shown: a comparison never sits silent for minutes.

torch's thread count is the run config's ``torch-threads`` (default 1) in every ClientApp
handler (``threads_mod``) and in the ServerApp's own work (set by ``Experiment``: reference
models, FUKD, evaluation); the long stages report progress (:mod:`not_flower.common.progress`):
each reference model of the membership attack, each round; the comparison command's
progress bar names the stage.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import Context, Message, RecordDict

from not_flower.app.client_app import app
from not_flower.app.server_app import Experiment
from not_flower.app.specs import data_spec, reference_spec
from not_flower.common import progress
from not_flower.common.config import ConfigError, parse_run_config
from not_flower.evaluation.reference_models import (
    build_universe,
    reference_confidences,
    reference_set,
)
from not_flower.experiments import compare
from not_flower.task.training import use_threads
from tests.fakegrid import FakeGrid, FakeNode


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _ask_identity(run_config: dict) -> Message:
    node = FakeNode(app, {"partition-id": 0, "num-partitions": 2})
    node.context = Context(
        run_id=1,
        node_id=0,
        node_config=dict(node.node_config),
        state=RecordDict(),
        run_config=dict(run_config),
    )
    grid = FakeGrid({7: node})
    [reply] = grid.send_and_receive(
        [Message(RecordDict(), dst_node_id=7, message_type="query.identity")]
    )
    return reply


@pytest.mark.parametrize("threads", [1, 2])
def test_every_client_handler_runs_with_the_run_configs_torch_threads(threads):
    torch.set_num_threads(3)
    reply = _ask_identity({"torch-threads": threads})
    assert not reply.has_error()
    assert torch.get_num_threads() == threads


def test_the_client_default_is_one_thread():
    torch.set_num_threads(3)
    assert not _ask_identity({}).has_error()
    assert torch.get_num_threads() == 1 == parse_run_config({}).torch_threads


def test_the_server_side_runs_with_the_run_configs_torch_threads(tmp_path):
    torch.set_num_threads(3)
    Experiment(parse_run_config({"out-dir": str(tmp_path), "torch-threads": 2}), tmp_path)
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, "many", True])
def test_a_bad_torch_threads_value_is_refused_naming_it(bad):
    with pytest.raises(ConfigError, match="torch-threads"):
        parse_run_config({"torch-threads": bad})
    with pytest.raises(ValueError, match="torch threads must be an integer >= 1"):
        use_threads(bad)


def test_reference_models_report_each_model_as_it_starts(tmp_path):
    cfg = parse_run_config(
        {
            "mia.reference-models": 2,
            "mia.reference-epochs": 1,
            "mia.cache-dir": str(tmp_path),
            "model": "mlp",
            "num-train-rounds": 1,
            "batch-size": 64,
        }
    )
    use_threads(1)  # as the ServerApp sets it
    lines: list[str] = []
    with progress.listening(lines.append):
        spec, reference = data_spec(cfg), reference_spec(cfg)
        first = reference_set(spec, reference, build_universe(spec, 3), 3)
        again = reference_set(spec, reference, build_universe(spec, 3), 3)  # from the cache
    assert not first.loaded and again.loaded
    assert lines == [
        "membership: reference model 1/2 (1 epochs)",
        "membership: reference model 2/2 (1 epochs)",
    ]


def test_reference_confidences_calls_on_model_before_each_model():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 4)).astype(np.float32), rng.integers(0, 2, 20)
    seen = []
    membership = np.array([[True] * 10 + [False] * 10, [False] * 10 + [True] * 10])
    reference_confidences(
        x,
        y,
        membership,
        lambda: torch.nn.Linear(4, 2),
        epochs=1,
        batch_size=8,
        lr=0.1,
        momentum=0.0,
        seed=0,
        on_model=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(1, 2), (2, 2)]


def test_report_logs_and_tells_listeners_only_inside_listening(caplog):
    lines: list[str] = []
    with caplog.at_level("INFO", logger="flwr"):
        with progress.listening(lines.append):
            assert progress.report("round", 3, 25, "train", log_it=False) == "round 3/25 (train)"
            progress.report("membership: reference model", 3, 8)
        progress.report("round", 4, 25)
    assert lines == ["round 3/25 (train)", "membership: reference model 3/8"]
    assert "membership: reference model 3/8" in caplog.text
    assert "round 3/25" not in caplog.text  # Flower logs its rounds itself


def test_the_comparisons_progress_bar_names_the_stage(monkeypatch, capsys, tmp_path):
    def fake_execute(spec, args, write):  # a run that trains reference models, then fails
        progress.report("membership: reference model", 3, 8, "5 epochs")
        return {
            "scenario": spec.scenario,
            "seed": spec.seed,
            "method": spec.method,
            "status": "failed",
            "error": "stopped by the test",
            "results": None,
            "path": str(tmp_path),
            "seconds": 0.0,
        }

    monkeypatch.setattr(compare, "execute", fake_execute)
    monkeypatch.setattr(compare, "write_report", lambda *a, **k: None)
    status = compare.main(
        ["--out", str(tmp_path), "--seeds", "0", "--scenarios", "backdoor", "--methods", "retrain"]
    )
    err = capsys.readouterr().err
    assert status == 1
    assert "backdoor seed0 Retrain" in err and "membership: reference model 3/8 (5 epochs)" in err
