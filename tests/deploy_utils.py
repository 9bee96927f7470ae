"""Helpers for the deployment tests: start a SuperLink / SuperNodes / `flwr run` as real
processes, stop them by pid, and read what a run left behind.

Every process is started in its own session (``start_new_session``) and remembered; at
``Deployment.stop()`` each one and all its descendants (Flower's SuperLink and SuperNode
spawn ``flower-superexec``, which spawns ``flwr-serverapp`` / ``flwr-clientapp``) are
stopped by pid, never by name, so that other runs on the machine are left alone.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEPLOY = ROOT / "examples" / "deploy"
# Small settings shared by the deployment tests (3 nodes): about 15-30 s per round here.
FAST = "local-epochs=1 fraction-evaluate=0"


def run_script(
    cmd: list[str], *, timeout: float, grace: float = 60.0, merge_stderr: bool = False, **kwargs
) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True, timeout=...)`` for a script that
    starts servers, stopping what it started on every exit of the test.

    ``subprocess.run`` SIGKILLs the script on a timeout or when the test run is
    interrupted (Ctrl-C), so its trap never runs and its SuperLink and SuperNodes live on.
    Here the script gets SIGTERM first (its trap stops what it started) and ``grace``
    seconds; then every process of its tree, as listed before the signal, that is still
    alive is stopped by pid (:func:`not_flower.launch.proctree.stop_processes`); the exception is
    raised again.

    Parameters
    ----------
    cmd : list[str]
        The command.
    timeout : float
        Seconds before the script is stopped and ``subprocess.TimeoutExpired`` raised.
    grace : float (default: 60.0)
        Seconds the script's own trap gets to stop its processes.
    merge_stderr : bool (default: False)
        stderr into stdout (``stderr`` of the result is then ``None``).
    **kwargs
        ``cwd``, ``env`` ... as for ``subprocess.Popen``.
    """
    from not_flower.launch.proctree import collect, stop_processes  # pylint: disable=import-outside-toplevel

    kwargs.pop("capture_output", None)
    kwargs.pop("text", None)
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
        **kwargs,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        tree = collect([proc.pid])  # before the signal: its children are re-parented after
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        stop_processes(tree)
        proc.kill()
        proc.wait()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(flwr_home: Path) -> dict[str, str]:
    """Environment for Flower commands: this venv first, a private FLWR_HOME."""
    env = dict(os.environ)
    env.update(
        FLWR_HOME=str(flwr_home),
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        PATH=f"{BIN}:{env.get('PATH', '')}",
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
        PYTHONUNBUFFERED="1",
    )
    return env


def pid_alive(pid: int) -> bool:
    """True when pid exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def children(pid: int) -> list[int]:
    """Direct children of pid (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(entry.name))
    return out


def descendants(pid: int) -> list[int]:
    """All descendants of pid, parents before children."""
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains ``text`` (to check nothing leaked)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            line = cmdline(int(entry.name))
            if text in line and pid_alive(int(entry.name)):
                found.append((int(entry.name), line))
    return found


def stop_pids(pids: list[int], grace: float = 10.0) -> None:
    """SIGTERM pids, wait up to grace seconds, SIGKILL what is left."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def stop_tree(proc: subprocess.Popen, grace: float = 10.0) -> list[int]:
    """Stop a started process and all its descendants, by pid; return the pids."""
    pids = [proc.pid, *descendants(proc.pid)] if proc.poll() is None else descendants(proc.pid)
    stop_pids(pids, grace)
    # a SuperExec may have launched a task while we waited
    late = [p for pid in pids for p in descendants(pid)]
    stop_pids(late, 2.0)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    return pids + late


def write_connection(
    flwr_home: Path, name: str, address: str, root_certificates: str | None = None
) -> None:
    """Add ``[superlink.NAME]`` to FLWR_HOME/config.toml (Flower 1.42 connection format)."""
    import tomllib

    import tomli_w

    path = flwr_home / "config.toml"
    flwr_home.mkdir(parents=True, exist_ok=True)
    cfg = tomllib.loads(path.read_text()) if path.exists() else {}
    conn: dict = {"address": address}
    if root_certificates:
        conn["root-certificates"] = root_certificates
    else:
        conn["insecure"] = True
    cfg.setdefault("superlink", {})[name] = conn
    path.write_text(tomli_w.dumps(cfg))


@dataclass
class Deployment:
    """Processes of one deployment; ``stop()`` ends all of them (use as a context manager)."""

    work: Path
    flwr_home: Path | None = None
    connection: str = "test-deployment"
    port: int = 0
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    stopped: list[int] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.flwr_home = self.flwr_home or self.work / "flwr-home"
        self.env = base_env(self.flwr_home)
        self.port = self.port or free_port()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- processes ---------------------------------------------------------------------
    def start(
        self, name: str, args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        """Start args as ``name`` (log in work/NAME.log), in its own session."""
        if name in self.procs and self.procs[name].poll() is None:
            raise RuntimeError(f"{name} is already running")
        log = open(self.work / f"{name}.log", "ab")  # noqa: SIM115 - closed by the child
        proc = subprocess.Popen(
            args,
            cwd=cwd or self.work,
            env=env or self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def stop_one(self, name: str) -> None:
        self.stopped += stop_tree(self.procs[name])

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            self.stopped += stop_tree(self.procs[name])

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self, name: str) -> str:
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- SuperLink / SuperNodes --------------------------------------------------------
    def start_superlink(
        self,
        extra: list[str] | None = None,
        insecure: bool = True,
        root_certificates: str | None = None,
    ) -> None:
        args = [
            "flower-superlink",
            "--port",
            str(self.port),
            "--database",
            str(self.work / "state.db"),
            "--disable-runtime-dependency-installation",
        ]
        if insecure:
            args.insert(1, "--insecure")
        self.start("superlink", [*args, *(extra or [])])
        wait_port(
            "127.0.0.1",
            self.port,
            timeout=60,
            proc=self.procs["superlink"],
            log=lambda: self.log("superlink"),
        )
        write_connection(self.flwr_home, self.connection, self.address, root_certificates)

    def start_supernode(
        self,
        i: int,
        num: int,
        extra_config: str = "",
        extra: list[str] | None = None,
        insecure: bool = True,
        name: str | None = None,
    ) -> None:
        node_config = f"partition-id={i} num-partitions={num} {extra_config}".strip()
        args = [
            "flower-supernode",
            "--superlink",
            self.address,
            "--port",
            str(free_port()),
            "--node-config",
            node_config,
        ]
        if insecure:
            args.insert(1, "--insecure")
        self.start(name or f"supernode-{i}", [*args, *(extra or [])])

    # -- flwr CLI ----------------------------------------------------------------------
    def flwr(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "flwr"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def nodes(self) -> list[dict]:
        """`flwr supernode ls CONNECTION --format json` (nodes that are not deleted)."""
        res = self.flwr("supernode", "ls", self.connection, "--format", "json")
        text = res.stdout
        if "{" not in text:
            return []
        try:
            return json.loads(text[text.index("{") :]).get("nodes", [])
        except ValueError:
            return []

    def wait_nodes(self, count: int, timeout: float = 120) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            online = [n for n in self.nodes() if n.get("status") == "online"]
            if len(online) >= count:
                return online
            time.sleep(1)
        logs = "\n".join(f"--- {n}\n{self.log(n)[-1500:]}" for n in self.procs)
        raise AssertionError(f"fewer than {count} SuperNodes online after {timeout}s\n{logs}")

    def run_async(self, run_config: str, name: str = "flwr-run") -> subprocess.Popen:
        """`flwr run . CONNECTION --stream --run-config ...` in the background."""
        return self.start(
            name,
            [
                str(BIN / "flwr"),
                "run",
                ".",
                self.connection,
                "--stream",
                "--run-config",
                run_config,
            ],
            cwd=ROOT,
        )

    def run(self, run_config: str, name: str = "flwr-run", timeout: float = 400) -> str:
        """Run to the end; return its log; fail with the log tail when it fails."""
        proc = self.run_async(run_config, name)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop_one(name)
            raise AssertionError(f"{name} timed out\n{self.log(name)[-4000:]}") from None
        out = self.log(name)
        assert proc.returncode == 0, f"{name} failed ({proc.returncode})\n{out[-4000:]}"
        return out


def wait_port(host: str, port: int, timeout: float = 60, proc=None, log=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), 1).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(
                    f"process exited ({proc.returncode})\n{log() if log else ''}"
                ) from None
            time.sleep(0.3)
    raise AssertionError(f"{host}:{port} not reachable after {timeout}s")


def wait_for_text(path: Path, text: str, timeout: float, proc=None) -> bool:
    """Wait until the file contains text (False on timeout or when proc ended first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        if proc is not None and proc.poll() is not None:
            return path.exists() and text in path.read_text(errors="replace")
        time.sleep(0.5)
    return False


# -- results.json ------------------------------------------------------------------------
def load_results(out: Path) -> dict:
    path = out / "results.json"
    assert path.is_file(), f"no {path}"
    return json.loads(path.read_text())


def rounds(results: dict) -> list[dict]:
    return [r for r in results["rounds"] if r["round"] >= 1]


def request_round(results: dict) -> int:
    """Round at which the (first) unlearning request was applied."""
    reqs = results["requests"]
    assert reqs, "no unlearning request in results.json"
    return int(reqs[0]["round"])


def assert_forgotten(results: dict, target: int, from_round: int | None = None) -> None:
    """target took part before from_round (if any) and in no round from it on."""
    start = from_round if from_round is not None else request_round(results)
    rows = rounds(results)
    before = [r for r in rows if r["round"] < start]
    after = [r for r in rows if r["round"] >= start]
    assert after, f"no round from {start} on: {rows}"
    for r in before:
        assert target in r["participants"], f"{target} missing before the request: {r}"
    for r in after:
        assert r["participants"], f"empty round {r['round']}"
        assert target not in r["participants"], f"{target} took part in round {r['round']}"
        assert target not in r.get("evaluated", []), f"{target} evaluated in round {r['round']}"


def shell_join(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)
