"""Per-checkout ports for the local SuperLink that ``flwr run`` starts, and stopping it.

``flwr run .`` with the ``local`` connection starts a background ``flower-superlink
--simulation`` on fixed loopback ports (39091 for its HTTP API, 39093 for its Control API)
and reuses whatever SuperLink answers there, whoever started it. Two checkouts on one
machine would therefore share one SuperLink, and one checkout's cleanup could stop the
other's run. Flower reads the two ports from ``FLWR_LOCAL_SUPERLINK_HTTP_API_PORT`` and
``FLWR_LOCAL_CONTROL_API_PORT``; ``scripts/flwr-env.sh`` gives each ``FLWR_HOME`` its own
pair, chosen once (free at that moment) and kept in ``$FLWR_HOME/local-superlink.env``,
and stops only the SuperLink started with this ``FLWR_HOME`` and port, by pid.

Standard library only, and runnable as a file (``python not_flower/launch/local_superlink.py``),
so that sourcing ``scripts/flwr-env.sh`` neither imports torch nor depends on which copy
of not-flower the venv has installed::

    python not_flower/launch/local_superlink.py env  FLWR_HOME   # prints `export ...=PORT` lines
    python not_flower/launch/local_superlink.py stop FLWR_HOME   # stops this FLWR_HOME's SuperLink
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
from pathlib import Path
from typing import Callable, Iterable, Mapping

if __package__:
    from not_flower.launch import proctree
else:  # run as a file: not_flower/launch/ is sys.path[0]
    import proctree  # type: ignore[no-redef]

ENV_FILE = "local-superlink.env"
HTTP_PORT_VAR = "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT"
CONTROL_PORT_VAR = "FLWR_LOCAL_CONTROL_API_PORT"
PORT_VARS = (HTTP_PORT_VAR, CONTROL_PORT_VAR)
# Below Linux's ephemeral range (32768-60999), so outgoing connections do not take them.
LOW, HIGH = 20000, 29999


def candidate_ports(key: str, low: int = LOW, high: int = HIGH) -> Iterable[int]:
    """Every port in ``[low, high]`` once, in an order that depends only on ``key``.

    Parameters
    ----------
    key : str
        What the order derives from (the ``FLWR_HOME`` path): two checkouts start at
        different places of the range, so they rarely even try the same port.
    low, high : int
        Inclusive port range.

    Returns
    -------
    Iterable[int]
    """
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"port range [{low}, {high}] is not within [1, 65535]")
    size = high - low + 1
    start = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % size
    for i in range(size):
        yield low + (start + i) % size


def choose_ports(
    key: str, is_free: Callable[[int], bool], count: int = 2, low: int = LOW, high: int = HIGH
) -> list[int]:
    """The first ``count`` distinct ports of :func:`candidate_ports` that are free.

    Parameters
    ----------
    key : str
        See :func:`candidate_ports`.
    is_free : Callable[[int], bool]
        Whether a port can be bound now (:func:`port_is_free` in real use).
    count : int (default: 2)
        How many ports (HTTP API and Control API).
    low, high : int
        Inclusive port range.

    Returns
    -------
    list[int]

    Raises
    ------
    RuntimeError
        If fewer than ``count`` ports of the range are free.
    """
    chosen: list[int] = []
    for port in candidate_ports(key, low, high):
        if is_free(port):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError(f"only {len(chosen)} free port(s) in [{low}, {high}], {count} needed")


def parse_env(text: str) -> dict[str, int] | None:
    """The two ports of an env file's ``NAME=PORT`` lines, or ``None`` if it is not valid.

    Parameters
    ----------
    text : str
        Content of ``$FLWR_HOME/local-superlink.env`` (``#`` comments and blank lines and
        an ``export`` prefix are allowed).

    Returns
    -------
    dict[str, int] | None
        ``{HTTP_PORT_VAR: p1, CONTROL_PORT_VAR: p2}`` with two different ports in
        ``[1, 65535]``; ``None`` when a variable is missing, not a port, or both are equal
        (the caller then chooses new ports).
    """
    found: dict[str, int] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip().strip("'\"")
        if name in PORT_VARS:
            if not value.isdigit() or not 1 <= int(value) <= 65535:
                return None
            found[name] = int(value)
    if set(found) != set(PORT_VARS) or found[HTTP_PORT_VAR] == found[CONTROL_PORT_VAR]:
        return None
    return found


def format_env(ports: Mapping[str, int]) -> str:
    """The env-file text for ``ports`` (also valid shell: ``export NAME=PORT`` lines)."""
    lines = [
        "# Ports of this FLWR_HOME's local SuperLink (scripts/flwr-env.sh chose them;"
        " edit to change)."
    ]
    lines += [f"export {name}={ports[name]}" for name in PORT_VARS]
    return "\n".join(lines) + "\n"


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``host:port`` can be bound now (TCP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def ports_for_home(
    flwr_home: Path, is_free: Callable[[int], bool] = port_is_free
) -> dict[str, int]:
    """This ``FLWR_HOME``'s ports: the kept ones, or new free ones written to its env file.

    Parameters
    ----------
    flwr_home : Path
        The checkout's ``FLWR_HOME``; created if missing.
    is_free : Callable[[int], bool]
        Used only when no valid env file exists yet.

    Returns
    -------
    dict[str, int]
        ``{HTTP_PORT_VAR: ..., CONTROL_PORT_VAR: ...}``.
    """
    path = Path(flwr_home) / ENV_FILE
    if path.is_file():
        kept = parse_env(path.read_text())
        if kept is not None:
            return kept
    http, control = choose_ports(str(Path(flwr_home).resolve()), is_free)
    ports = {HTTP_PORT_VAR: http, CONTROL_PORT_VAR: control}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(format_env(ports))
    tmp.replace(path)
    return ports


def superlink_pids(cmdlines: Mapping[int, list[str]], flwr_home: Path, http_port: int) -> list[int]:
    """Pids whose command line is the local SuperLink of ``flwr_home`` on ``http_port``.

    Parameters
    ----------
    cmdlines : Mapping[int, list[str]]
        argv of each process (:func:`read_cmdlines`).
    flwr_home : Path
        Its ``--log-file`` must be ``flwr_home/local-superlink/superlink.log``.
    http_port : int
        Its ``--port`` must be this.

    Returns
    -------
    list[int]
        Sorted pids; a SuperLink of another ``FLWR_HOME`` or port is never included.
    """
    log_file = str(Path(flwr_home) / "local-superlink" / "superlink.log")
    found = []
    for pid, argv in cmdlines.items():
        if not any(os.path.basename(a) == "flower-superlink" for a in argv[:2]):
            continue
        if _flag(argv, "--log-file") == log_file and _flag(argv, "--port") == str(http_port):
            found.append(pid)
    return sorted(found)


def _flag(argv: list[str], name: str) -> str | None:
    """Value of ``name VALUE`` or ``name=VALUE`` in ``argv``."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg[len(name) + 1 :]
    return None


def read_cmdlines() -> dict[int, list[str]]:
    """argv of every process of this user that ``/proc`` shows."""
    out: dict[int, list[str]] = {}
    uid = os.getuid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if raw:
            out[int(entry.name)] = [
                a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")
            ]
    return out


def stop(flwr_home: Path, grace: float = 5.0) -> list[int]:
    """Stop this ``FLWR_HOME``'s local SuperLink and everything it started.

    Its whole process tree (``flower-superexec``, ``flwr-simulation``, Ray's processes and
    workers), snapshotted before anything is signalled, and every process of this user that
    carries the SuperLink's :data:`proctree.TOKEN_VAR` value (set by ``not_flower/launch/cli.py
    run`` for the ``flwr run`` that started it), such as Ray workers left re-parented to
    init by a failed simulation: SIGTERM, then SIGKILL after ``grace`` seconds.

    Returns
    -------
    list[int]
        The pids signalled (empty if none was running).
    """
    path = Path(flwr_home) / ENV_FILE
    ports = parse_env(path.read_text()) if path.is_file() else None
    http_port = ports[HTTP_PORT_VAR] if ports else int(os.environ.get(HTTP_PORT_VAR, "39091"))
    pids = superlink_pids(read_cmdlines(), Path(flwr_home), http_port)
    if not pids:
        return []
    tokens = [proctree.environ_value(pid, proctree.TOKEN_VAR) or "" for pid in pids]
    return proctree.stop_processes(pids, tokens, grace)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``env FLWR_HOME`` or ``stop FLWR_HOME`` (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("env", "stop"):
        print("usage: local_superlink.py {env|stop} FLWR_HOME", file=sys.stderr)
        return 2
    home = Path(args[1])
    if args[0] == "env":
        sys.stdout.write(format_env(ports_for_home(home)))
    else:
        stop(home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
