"""The baselines NoT is judged against: PGD, FedEraser, FUKD (strategies/pgd.py, federaser.py,
fukd.py), their client handlers, run config, report rows, and one simulation each.

Unit tests run the strategies over the fake Grid (tests/fakegrid.py) with ClientApps whose
"training" is deterministic, so that each method's defining formula can be checked exactly;
the end-to-end tests run not-flower's app in Flower's simulation engine (3 clients, 2 train
rounds, 2 recovery rounds).
"""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import nn

from not_flower.app.specs import data_spec
from not_flower.common.config import ConfigError, parse_run_config
from not_flower.experiments import compare, report
from not_flower.task.models import build_model
from strategies import answer_identity
from strategies.federaser import FedEraser, calibrated_step
from strategies.fukd import FUKD
from strategies.not_strategy import arrayrecord_nbytes
from strategies.pgd import (
    PGD,
    l2_distance,
    pgd_radius,
    project_to_ball,
    projected_gradient_ascent,
)
from tests.fakegrid import FakeGrid, FakeNode

N = 3
TARGET = 1
SHAPES = {"weight": (10, 6), "bias": (10,)}  # nn.Linear(6, 10): a real torch model's keys


# --------------------------------------------------------------------------- fake clients
def fake_app(calibrate_step: float | None = None) -> ClientApp:
    """Deterministic ClientApp: train adds 0.1 * (pid + 1) to every weight, with
    num-examples 10 + pid; ``train.calibrate`` (if given) adds ``calibrate_step * (pid + 1)``."""
    app = ClientApp()

    def reply(msg, pid, delta, seconds_key):
        arrays = {
            k: Array((v.numpy() + delta).astype(np.float32))
            for k, v in msg.content["arrays"].items()
        }
        metrics = MetricRecord({"train-loss": 1.0, "num-examples": 10 + pid, seconds_key: 0.5})
        return Message(
            RecordDict({"arrays": ArrayRecord(arrays), "metrics": metrics}), reply_to=msg
        )

    @app.train()
    def train(msg, context):
        pid = int(context.node_config["partition-id"])
        return reply(msg, pid, 0.1 * (pid + 1), "train-seconds")

    if calibrate_step is not None:

        @app.train("calibrate")
        def calibrate(msg, context):
            pid = int(context.node_config["partition-id"])
            assert int(msg.content["config"]["local-epochs"]) == 1  # ceil(0.5 * 2)
            return reply(msg, pid, calibrate_step * (pid + 1), "train-seconds")

    app.query("identity")(answer_identity)
    return app


def fake_grid(app: ClientApp, n: int = N) -> FakeGrid:
    return FakeGrid(
        {1000 + 7 * i: FakeNode(app, {"partition-id": i, "num-partitions": n}) for i in range(n)}
    )


def node_of(grid: FakeGrid, pid: int) -> int:
    return next(n for n, node in grid.nodes.items() if node.node_config["partition-id"] == pid)


def initial() -> ArrayRecord:
    rng = np.random.default_rng(0)
    return ArrayRecord({k: Array(rng.normal(size=s).astype(np.float32)) for k, s in SHAPES.items()})


def as_np(arrays: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: v.numpy().astype(np.float64) for k, v in arrays.items()}


KW = dict(min_train_nodes=1, min_evaluate_nodes=1, min_available_nodes=1, fraction_evaluate=0.0)


def run(strategy, grid, rounds, request_round=None):
    captured = {}
    if request_round is not None:
        strategy.request_unlearning(str(TARGET), at_round=request_round)
    strategy.on_unlearning = lambda event, before, after: captured.update(
        event=event, before=as_np(before), after=as_np(after)
    )
    random.seed(0)
    result = strategy.start(grid, initial(), num_rounds=rounds)
    return result, captured


def weighted_shift(pids) -> float:
    """FedAvg of the fake clients' shifts 0.1 * (pid + 1) with weights 10 + pid."""
    return 0.1 * sum((10 + p) * (p + 1) for p in pids) / sum(10 + p for p in pids)


def after_request(grid: FakeGrid, first_message: int) -> list[tuple[str, int]]:
    return grid.sent[first_message:]


# --------------------------------------------------------------------------- PGD
def test_pgd_radius_and_projection_are_the_papers():
    ref = {"a": np.zeros(4, np.float32), "b": np.zeros(2, np.float32)}
    randoms = [{"a": np.full(4, v, np.float32), "b": np.full(2, v, np.float32)} for v in (1.0, 2.0)]
    # squared distances 6 and 24: radius^2 = mean / 3 = 5
    assert pgd_radius(ref, randoms, ["a", "b"]) == pytest.approx(np.sqrt(5.0))
    assert pgd_radius(ref, randoms, ["a"], divisor=1.0) == pytest.approx(np.sqrt(10.0))
    w = {"a": np.full(4, 3.0, np.float32), "b": np.full(2, 3.0, np.float32)}
    p = project_to_ball(w, ref, 1.5, ["a", "b"])
    assert l2_distance(p, ref, ["a", "b"]) == pytest.approx(1.5, rel=1e-6)
    np.testing.assert_allclose(p["a"] / p["a"][0], 1.0)  # same direction
    assert project_to_ball(ref, ref, 1.0, ["a"])["a"] is ref["a"]  # inside: unchanged


class TinyBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def test_pgd_ascent_stays_inside_the_ball_at_every_step_and_leaves_buffers():
    torch.manual_seed(0)
    model = TinyBN()
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, size=96)
    distances = []
    radius = 0.5
    stats = projected_gradient_ascent(
        model,
        reference,
        x,
        y,
        radius=radius,
        epochs=3,
        lr=0.05,
        batch_size=16,
        stop_accuracy=0.0,
        on_step=distances.append,
    )
    assert stats["pgd-steps"] == len(distances) == 3 * 6 and stats["pgd-epochs-run"] == 3
    assert max(distances) <= radius * (1 + 1e-6)
    assert max(distances) > 0.99 * radius  # the projection was active
    final = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    ref_np = {k: v.numpy() for k, v in reference.items()}
    params = [n for n, _ in model.named_parameters()]
    assert l2_distance(final, ref_np, params) <= radius * (1 + 1e-6)
    assert stats["pgd-distance"] == pytest.approx(l2_distance(final, ref_np, params), rel=1e-5)
    # ascent: the loss on the data went up
    with torch.no_grad():
        model.train(False)
        after = nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        model.load_state_dict(reference)
        before = nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
    assert after > before
    # BatchNorm statistics are the reference's, not the target data's
    for key in ("bn.running_mean", "bn.running_var", "bn.num_batches_tracked"):
        np.testing.assert_array_equal(final[key], ref_np[key])


def test_pgd_stops_early_below_the_accuracy_threshold():
    torch.manual_seed(1)
    model = TinyBN()
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, size=32)
    stats = projected_gradient_ascent(
        model, reference, x, y, radius=5.0, epochs=4, stop_accuracy=1.01
    )  # any accuracy is below: stop at once
    assert stats["pgd-epochs-run"] == 1 and stats["pgd-stopped-early"] == 1


def test_pgd_reference_is_the_others_average_and_the_target_runs_only_the_ascent():
    """The fake target has no train.pgd handler: its ascent fails, PGD keeps w_ref, which
    is then exactly the num-examples-weighted average of the others' last local models."""
    grid = fake_grid(fake_app())
    strategy = PGD(radius=1.0, **KW)
    _, got = run(strategy, grid, rounds=4, request_round=3)
    g1 = as_np(initial())
    g2 = {k: v + weighted_shift(range(N)) for k, v in g1.items()}  # after round 1
    g3 = {k: v + weighted_shift(range(N)) for k, v in g2.items()}  # after round 2 = before
    ref = {k: v + weighted_shift([0, 2]) for k, v in g2.items()}  # others' round-2 models
    for k in SHAPES:
        np.testing.assert_allclose(got["before"][k], g3[k], atol=1e-5)
        np.testing.assert_allclose(got["after"][k], ref[k], atol=1e-5)
    target = node_of(grid, TARGET)
    # 2 rounds, then the ascent, then nothing (the request itself asks who is who)
    assert grid.sent_to(target, "train") == ["train", "train", "train.pgd"]
    assert set(grid.sent_to(target)) == {"train", "train.pgd", "query.identity"}
    step = strategy.steps[0]
    assert step["targets_detail"][0]["status"] == "no reply"
    assert step["reference"].startswith("num-examples-weighted average") and step["rounds"] == 1
    # storage: one local model per client (peak 3), the target's dropped after its removal
    model_bytes = sum(int(np.prod(s)) * 4 for s in SHAPES.values())
    assert strategy.storage_peak_bytes == N * model_bytes
    assert strategy.storage_bytes == (N - 1) * model_bytes
    assert target not in strategy.unlearner.latest


def test_pgd_over_real_clients_ends_inside_the_ball(tmp_path):
    """not-flower's own ClientApp (digits, cnn): the target's ascent comes back inside the
    ball; the reply is the new global model; the target is never asked again."""
    from not_flower.app import client_app as ca
    from strategies.pgd import random_state_fn

    grid = fake_grid(ca.app)
    for node in grid.nodes.values():
        node.context.run_config = {"local-epochs": 1, "lr": 0.05, "batch-size": 64}  # fast
    torch.manual_seed(0)
    build = lambda: build_model("cnn", (1, 8, 8), 10)  # noqa: E731
    strategy = PGD(
        random_model_fn=random_state_fn(build),
        epochs=2,
        param_keys=[n for n, _ in build().named_parameters()],
        **KW,
    )
    strategy.request_unlearning(str(TARGET), at_round=3)
    got = {}
    strategy.on_unlearning = lambda e, before, after: got.update(after=as_np(after))
    random.seed(0)
    strategy.start(grid, ArrayRecord(build().state_dict()), num_rounds=3)
    step = strategy.steps[0]
    detail = step["targets_detail"][0]
    assert detail["status"] == "ok" and not detail["projected_by_server"]
    assert 0 < step["distance"] <= step["radius"] * (1 + 1e-5)
    assert detail["pgd-train-acc-end"] < detail["pgd-train-acc-start"]
    target = node_of(grid, TARGET)
    assert grid.sent_to(target, "train") == ["train", "train", "train.pgd"]
    info = strategy.rounds[3]
    assert info.unlearning_replied == [target] and info.extra_rounds == 1
    assert target not in info.train_replied


# --------------------------------------------------------------------------- FedEraser
def test_federaser_storage_grows_with_rounds_and_clients(tmp_path):
    def stored(n, rounds, interval=1):
        folder = tmp_path / f"n{n}-r{rounds}-i{interval}"
        strategy = FedEraser(store_dir=folder, local_epochs=2, retain_interval=interval, **KW)
        run(strategy, fake_grid(fake_app(), n), rounds)
        files = [f for f in folder.rglob("*") if f.is_file()]
        updates = sorted(folder.glob("round-*/node-*.npz"))
        # measured on disk, everything counted: the updates, the initial model, the index
        assert strategy.storage_bytes == sum(f.stat().st_size for f in files)
        assert {f.name for f in files} - {f.name for f in updates} == {"initial.npz", "index.json"}
        assert strategy.storage_peak_bytes == strategy.storage_bytes  # nothing deleted
        return strategy, sum(f.stat().st_size for f in updates), len(updates)

    s22, b22, n22 = stored(2, 2)
    _, b24, n24 = stored(2, 4)
    _, b32, n32 = stored(3, 2)
    _, b42, n42 = stored(2, 4, interval=2)
    assert (n22, n24, n32, n42) == (4, 8, 6, 4)  # one file per (retained round, client)
    size = b22 // 4
    assert size > sum(int(np.prod(s)) * 4 for s in SHAPES.values())  # the float32 update
    # twice the rounds: twice the bytes; 3 clients instead of 2: 1.5 times
    assert (b22, b24, b32, b42) == (4 * size, 8 * size, 6 * size, 4 * size)
    assert s22.unlearner.retained_rounds == [1, 2]


def test_federaser_rebuilds_with_stored_lengths_and_calibrated_directions(tmp_path):
    """Calibration moves each client by -0.05 (pid + 1): the opposite direction of its stored
    update (+0.1 (pid + 1)). The rebuilt model takes the stored length along the calibrated
    direction, so round 2 undoes round 1 exactly: rebuilt = the initial model."""
    grid = fake_grid(fake_app(calibrate_step=-0.05))
    strategy = FedEraser(store_dir=tmp_path / "h", local_epochs=2, calibration_ratio=0.5, **KW)
    _, got = run(strategy, grid, rounds=4, request_round=3)
    g1 = as_np(initial())
    for k in SHAPES:
        np.testing.assert_allclose(got["after"][k], g1[k], atol=1e-5)
        assert np.abs(got["before"][k] - g1[k]).max() > 0.3  # the original model differs
    target = node_of(grid, TARGET)
    assert grid.sent_to(target, "train") == ["train", "train"]  # nothing after the request
    assert set(grid.sent_to(target)) == {"train", "query.identity"}
    for pid in (0, 2):
        assert grid.sent_to(node_of(grid, pid), "train") == [
            "train",
            "train",
            "train.calibrate",
            "train",
            "train",
        ]
    step = strategy.steps[0]
    assert step["retained_rounds"] == [1, 2] and step["rounds"] == 1  # one calibration round
    assert [r.get("calibrated") for r in step["rounds_rebuilt"]] == [False, True]
    # the target's stored updates are deleted, the others' kept
    assert not list((tmp_path / "h").glob(f"round-*/node-{target}.npz"))
    assert len(list((tmp_path / "h").glob("round-000[12]/node-*.npz"))) == 4
    assert step["storage_bytes_before"] > step["storage_bytes_after"]


def test_calibrated_step_per_client_per_tensor():
    model = {"w": np.zeros(4, np.float32), "n": np.array(7)}
    old_a, cal_a = {"w": np.array([3.0, 0, 0, 4.0])}, {"w": np.array([0, 2.0, 0, 0])}  # |old| 5
    old_b, cal_b = {"w": np.array([1.0, 0, 0, 0])}, {"w": np.array([0, 0, -9.0, 0])}  # |old| 1
    out = calibrated_step(model, [(3.0, old_a, cal_a), (1.0, old_b, cal_b)], ["w"])
    np.testing.assert_allclose(out["w"], [0, 0.75 * 5, -0.25 * 1, 0])
    assert out["n"] is model["n"]


# --------------------------------------------------------------------------- FUKD
def test_fukd_subtracts_exactly_the_targets_weighted_updates(monkeypatch):
    import strategies.fukd as fukd

    monkeypatch.setattr(fukd, "distill", lambda *a, **k: {"distill-loss": 0.0, "distill-steps": 0})
    grid = fake_grid(fake_app())
    strategy = FUKD(model=nn.Linear(6, 10), server_x=np.zeros((4, 6), np.float32), **KW)
    model_bytes = sum(int(np.prod(s)) * 4 for s in SHAPES.values())
    _, got = run(strategy, grid, rounds=4, request_round=3)
    share = 0.1 * (TARGET + 1) * (10 + TARGET) / sum(10 + p for p in range(N))  # p_i (w_i - w)
    for k in SHAPES:
        np.testing.assert_allclose(got["after"][k], got["before"][k] - 2 * share, atol=1e-5)
    target = node_of(grid, TARGET)
    assert grid.sent_to(target, "train") == ["train", "train"]  # no participation at all
    assert set(grid.sent_to(target)) == {"train", "query.identity"}
    assert strategy.steps[0]["rounds"] == 0 and strategy.steps[0]["participants"] == []
    assert strategy.storage_peak_bytes == N * model_bytes  # one accumulated update each
    assert strategy.storage_bytes == (N - 1) * model_bytes and target not in strategy.accumulated


def test_fukd_distillation_pulls_the_skewed_model_towards_the_teacher():
    from strategies.fukd import distill

    torch.manual_seed(0)
    teacher, student = nn.Linear(6, 10), nn.Linear(6, 10)
    x = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)
    xt = torch.from_numpy(x)

    def gap():
        with torch.no_grad():
            return float(
                nn.functional.kl_div(
                    torch.log_softmax(student(xt), 1),
                    torch.softmax(teacher(xt), 1),
                    reduction="batchmean",
                )
            )

    before = gap()
    stats = distill(student, teacher, x, epochs=20, lr=0.1, batch_size=16)
    assert stats["distill-steps"] == 20 * 4 and gap() < 0.5 * before


def test_server_data_is_held_out_from_every_client():
    from not_flower.task.training import _partitions, client_data, dataset_for, server_indices

    base = parse_run_config({})
    cfg = parse_run_config({"fukd.server-data-fraction": 0.1})
    held = server_indices(data_spec(cfg))
    labels = dataset_for(data_spec(cfg)).y_train
    assert len(held) == pytest.approx(0.1 * len(labels), abs=10)
    for c in np.unique(labels):  # stratified
        assert np.isin(held, np.flatnonzero(labels == c)).sum() == round(0.1 * (labels == c).sum())
    parts = _partitions(data_spec(cfg), 4)
    union = np.concatenate(parts)
    assert len(np.intersect1d(union, held)) == 0
    assert len(union) + len(held) == len(labels)
    # without a fraction the partitions are exactly what they were
    from not_flower.task.partition import partition

    assert all(
        np.array_equal(a, b)
        for a, b in zip(
            _partitions(data_spec(base), 4), partition(labels, 4, "iid", alpha=0.5, seed=0)
        )
    )
    assert len(client_data(data_spec(cfg), 0, 4).y_train) < len(
        client_data(data_spec(base), 0, 4).y_train
    )


# --------------------------------------------------------------------------- config, report
@pytest.mark.parametrize(
    "config,message",
    [
        ({"method": "fukd"}, "fukd.server-data-fraction > 0"),
        (
            {"method": "federaser", "init-checkpoint": "/x.pt", "num-train-rounds": 0},
            "cannot start from init-checkpoint",
        ),
        ({"method": "pgd", "unlearn.mode": "class", "unlearn.classes": "3"}, "whole clients only"),
        ({"method": "pgd", "resume": True}, "resume is supported for methods not, ft and retrain"),
        ({"pgd.epochs": 0}, "pgd.epochs must be >= 1"),
        ({"federaser.calibration-ratio": 0}, r"federaser.calibration-ratio must be in \(0, 1\]"),
        ({"federaser.retain-interval": 0}, "federaser.retain-interval must be >= 1"),
        ({"fukd.server-data-fraction": 1.0}, r"fukd.server-data-fraction must be in \[0, 1\)"),
        ({"fukd.temperature": 0}, "fukd.temperature must be > 0"),
    ],
)
def test_bad_baseline_settings_are_named(config, message):
    with pytest.raises(ConfigError, match=message):
        parse_run_config(config)


def test_strategies_refuse_class_and_instance_requests(tmp_path):
    strategy = PGD(radius=1.0, **KW)
    with pytest.raises(ValueError, match="whole clients only"):
        strategy.request_unlearning("*", classes=[3])
    with pytest.raises(ValueError, match="whole clients only"):
        FedEraser(store_dir=tmp_path, local_epochs=1, **KW).request_unlearning("0", samples=[1])


def _baseline_results(method, *, storage, step_rounds):
    from tests.test_compare import metrics, unlearner_results

    res = unlearner_results(
        method, metrics(0.96, 0.95, 0.91, 0.05), {2: metrics(0.9, 0.5, 0.88, 0.4)}, cap=2
    )
    res["models"]["unlearned"] = metrics(0.5, 0.1, 0.5, 0.9)
    res["rounds"][21]["extra_rounds"] = step_rounds
    res["costs"]["unlearning"]["extra_rounds"] = step_rounds
    res["costs"]["unlearning_step"] = {
        "rounds": step_rounds,
        "bytes_down": 3000,
        "bytes_up": 1000,
        "client_seconds": 2.0,
        "server_seconds": 0.5,
    }
    res["costs"]["storage_bytes"] = storage
    res["requirements"] = dict(report.DEFAULT_REQUIREMENTS[method])
    return res


def test_report_rows_and_requirements_of_the_baselines():
    from tests.test_compare import metrics, record, retrain_results, unlearner_results

    runs = [
        record("iid", 0, "retrain", retrain_results(metrics(0.9, 0.4, 0.88, 0.5))),
        record(
            "iid",
            0,
            "not",
            unlearner_results(
                "not", metrics(0.96, 0.95, 0.91, 0.05), {2: metrics(0.9, 0.4, 0.88, 0.5)}, cap=2
            ),
        ),
        record("iid", 0, "pgd", _baseline_results("pgd", storage=3_000_000, step_rounds=1)),
        record(
            "iid", 0, "federaser", _baseline_results("federaser", storage=9_000_000, step_rounds=19)
        ),
    ]
    s = report.summarize_scenario(runs, "iid")
    assert list(s["methods"]) == [
        "Original",
        "Retrain",
        "NoT@2",
        "PGD@0",
        "PGD@2",
        "FedEraser@0",
        "FedEraser@2",
    ]
    pgd0 = s["methods"]["PGD@0"]["per_seed"]["0"]
    assert pgd0["retain"] == pytest.approx(50.0) and pgd0["rounds"] == 1  # the ascent round
    assert pgd0["mb"] == pytest.approx(0.004)
    assert s["methods"]["PGD@2"]["per_seed"]["0"]["rounds"] == 3  # 2 recovery + the ascent
    assert s["methods"]["FedEraser@2"]["per_seed"]["0"]["rounds"] == 21
    assert s["methods"]["NoT@2"]["per_seed"]["0"]["rounds"] == 2
    req = s["requirements"]
    assert list(req) == ["Retrain", "NoT", "PGD", "FedEraser"]
    assert req["PGD"]["target_participation"] is True and req["NoT"]["target_data"] is False
    assert req["FedEraser"]["storage_mb"]["mean"] == pytest.approx(9.0)
    assert req["NoT"]["storage_mb"]["mean"] == 0
    md = report.render_markdown(report.build_report(runs))
    assert report.REQUIREMENTS_HEADER in md
    line = next(x for x in md.splitlines() if x.startswith("| PGD |"))
    assert line.startswith(
        "| PGD | 3.000 (every client's latest local model, in server memory) | yes | yes | no |"
    )
    assert next(x for x in md.splitlines() if x.startswith("| NoT |")).startswith(
        "| NoT | 0 | no | no | no |"
    )


def test_compare_runs_the_baselines_only_when_asked(tmp_path):
    args = compare.parse_args(["--out", str(tmp_path)])
    assert args.methods == ["retrain", "ft", "not"] and args.server_data_fraction == 0.0
    assert all("fukd.server-data-fraction" not in s.run_config for s in compare.plan_runs(args))
    args = compare.parse_args(
        [
            "--out",
            str(tmp_path),
            "--seeds",
            "0",
            "--scenarios",
            "iid",
            "--methods",
            "fukd",
            "pgd",
            "retrain",
            "not",
            "federaser",
            "--recovery-rounds",
            "5",
        ]
    )
    assert args.methods == ["retrain", "not", "pgd", "federaser", "fukd"]
    specs = {s.method: s.run_config for s in compare.plan_runs(args)}
    assert {c["fukd.server-data-fraction"] for c in specs.values()} == {0.1}  # every method
    assert specs["pgd"]["recovery.rounds"] == 5 and specs["pgd"]["eval-recovery-rounds"] == "5"
    for cfg in specs.values():
        parse_run_config(cfg)
    with pytest.raises(SystemExit):
        compare.parse_args(
            ["--out", str(tmp_path), "--methods", "fukd", "--server-data-fraction", "0"]
        )


def test_resume_accepts_results_written_before_the_new_keys_existed(tmp_path):
    from not_flower.common.config import to_run_config

    args = compare.parse_args(
        ["--out", str(tmp_path), "--seeds", "0", "--scenarios", "iid", "--methods", "not"]
    )
    cfg = compare.plan_runs(args)[0].run_config
    old = {
        k: v
        for k, v in to_run_config(parse_run_config(cfg)).items()
        if not k.startswith(("pgd-", "fukd-"))
        and k
        not in (
            "federaser.retain-interval",
            "federaser.calibration-ratio",
            "fukd.server-data-fraction",
        )
    }
    assert compare.config_mismatch(cfg, {"config": old}) is None
    assert "fukd.server-data-fraction" in compare.config_mismatch(
        {**cfg, "fukd.server-data-fraction": 0.1}, {"config": old}
    )


# --------------------------------------------------------------------------- end to end
def _model_bytes() -> tuple[int, int]:
    state = build_model("cnn", (1, 8, 8), 10).state_dict()
    return (sum(t.numel() * 4 for t in state.values()), arrayrecord_nbytes(ArrayRecord(state)))


def _simulate(tmp_path, method, **extra):
    from not_flower.experiments.simulation import simulate

    config = {
        "out-dir": str(tmp_path),
        "method": method,
        "num-train-rounds": 2,
        "recovery.rounds": 2,
        "unlearn.clients": str(TARGET),
        "lr": 0.02,
        "eval-recovery-rounds": "1,2",
        "recovery.run-to-cap": True,  # fixed length: the stopping rule reports, never ends it
        **extra,
    }
    results = simulate(config, num_supernodes=N)
    assert json.loads((tmp_path / "results.json").read_text()) == results
    rows = results["rounds"]
    assert [r["phase"] for r in rows] == ["init", "train", "train", "recovery", "recovery"]
    assert all(r["participants"] == [0, 1, 2] for r in rows[1:3])
    assert all(r["participants"] == [0, 2] for r in rows[3:])  # never the target in recovery
    assert all(TARGET not in r["evaluated"] for r in rows[3:])
    assert results["final"] == "recovered"
    assert {"original", "unlearned", "recovered", "recovered@1", "recovered@2"} <= set(
        results["models"]
    )
    costs = results["costs"]
    assert costs["unlearning_fixed_length"]["rounds"] == 2
    assert costs["unlearning_fixed_length"]["client_seconds"] > 0
    assert costs["unlearning_fixed_length"]["bytes_up"] > 0
    request = results["requests"][0]
    assert request["round"] == 3 and request["partition_ids"] == [TARGET]
    assert request["sha256_before"] != request["sha256_negated"]  # the step changed the model
    return results


@pytest.mark.e2e
@pytest.mark.parametrize("method", ["pgd", "federaser", "fukd"])
def test_baseline_runs_end_to_end(method, tmp_path):
    extra = {"fukd.server-data-fraction": 0.1} if method == "fukd" else {}
    results = _simulate(tmp_path, method, **extra)
    rows = results["rounds"]
    step_costs = results["costs"]["unlearning_step"]
    step = results["unlearning_steps"][0]
    floats, wire = _model_bytes()
    assert (
        results["requirements"]
        == {"pgd": PGD, "federaser": FedEraser, "fukd": FUKD}[method].REQUIREMENTS.to_dict()
    )
    if method == "pgd":
        # the target works exactly once after the request: the ascent, at the boundary
        assert [r["unlearning_participants"] for r in rows] == [[], [], [], [TARGET], []]
        assert [r["extra_rounds"] for r in rows] == [0, 0, 0, 1, 0]
        assert step_costs["rounds"] == 1
        assert step_costs["bytes_down"] == wire and step_costs["bytes_up"] == wire
        assert step_costs["client_seconds"] > 0
        assert 0 < step["distance"] <= step["radius"] * (1 + 1e-5)
        assert step["targets_detail"][0]["status"] == "ok"
        # storage: the latest local model of each of the 3 clients, measured
        assert results["costs"]["storage_bytes"] == N * floats
        assert results["costs"]["storage_bytes_final"] == (N - 1) * floats
    elif method == "federaser":
        assert [r["unlearning_participants"] for r in rows] == [[], [], [], [0, 2], []]
        assert step_costs["rounds"] == 1  # retained rounds 1 and 2: one calibration round
        assert step_costs["bytes_down"] == 2 * wire == step_costs["bytes_up"]
        history = tmp_path / "federaser-history"
        files = sorted(history.rglob("*.npz"))
        on_disk = sum(f.stat().st_size for f in history.rglob("*") if f.is_file())
        assert results["costs"]["storage_bytes_final"] == on_disk
        size = files[0].stat().st_size
        assert all(f.stat().st_size == size for f in files) and size > floats
        # before the request: the initial model + 3 clients x 2 rounds; the target's 2 files
        # are deleted; recovery rounds are kept too (2 clients x 2 rounds)
        assert step["storage_bytes_before"] == pytest.approx(7 * size, abs=2000)
        assert step["storage_bytes_after"] == pytest.approx(5 * size, abs=2000)
        assert len(files) == 1 + 2 * 4
        assert results["costs"]["storage_bytes"] == on_disk  # the peak is the end here
        assert not list(history.glob(f"round-*/node-{results['excluded_node_ids'][0]}.npz"))
    else:
        assert all(r["unlearning_participants"] == [] for r in rows)
        assert step_costs["rounds"] == 0 and step_costs["bytes_down"] == 0
        assert step_costs["server_seconds"] > 0 and step["server_samples"] > 0
        assert results["server_data"]["fraction"] == 0.1
        assert results["costs"]["storage_bytes"] == N * floats
    assert results["models"]["unlearned"]["test_acc"] >= 0
    assert os.path.isfile(tmp_path / "unlearning-record.json")
