"""Command-line helpers for our scripts: check ``--run-config`` keys, run ``flwr run`` checked.

``flwr run`` rejects an unknown run-config key with only ``[code: 15] Invalid run
configuration.`` (the key's name is in the SuperLink's log), and it exits 0 when the
ServerApp fails. The scripts (``examples/quickstart.sh``, ``examples/deploy/*.sh``) call
this module instead:

    python not_flower/launch/cli.py check-run-config [--app DIR] [--num-clients N] "k=v" ...
        exit 2 naming each unknown key and the nearest valid ones (pyproject.toml's
        [tool.flwr.app.config]), or a value not-flower's app would refuse (parsed by
        not_flower/common/config.py and checked by not_flower/common/prestart.py, which import
        no torch: before any SuperLink or simulation starts): class labels the data set
        lacks, with N clients targets naming every client or a train-subset too small,
        an init-checkpoint that is not a file, an audit-log or out-dir under a file;
        exit 0 when every key and value is valid.
    python not_flower/launch/cli.py run APP [CONNECTION] [flwr run options ...]
        checks the run config as above (N: a simulation's num-supernodes, from
        --federation-config or the connection's options; paths only when the ServerApp
        runs on this machine), merges every ``--run-config`` into one (a key
        given twice takes its later value, so a script's own setting can be overridden),
        runs ``flwr run`` with its output passed through,
        then asks the SuperLink for the run's status (``flwr ls --run-id ID --format json``)
        and exits 1 when the run did not complete, with the error's first line printed
        last. On SIGINT (Ctrl-C), SIGTERM, SIGHUP or a closed output pipe it asks the
        SuperLink to stop the run (``flwr stop``) and exits 130, 143, 129 or 141. Whatever
        the outcome, it stops every process it started before it exits: ``flwr run`` and
        everything started from it (a local SuperLink ``flwr run`` launched, with its
        simulation and Ray workers), by process tree and by a token in their environment
        (``not_flower/launch/proctree.py``), never by name.

Standard library only, and runnable as a file, so that it neither imports torch nor
depends on which copy of not-flower the venv has installed.
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Iterable, Sequence

if __package__:
    from not_flower.launch import proctree
else:  # run as a file: not_flower/launch/ is sys.path[0]
    import proctree  # type: ignore[no-redef]

# The pattern flwr 1.42 uses to split a --run-config string (flwr.common.config).
_PAIR = re.compile(r"(\S+?)=(\'[^\']*\'|\"[^\"]*\"|\S+)")
_RUN_ID = re.compile(r"Successfully started run (\d+)|\"run-id\": \"(\d+)\"")
#: Signals that stop a run (Ctrl-C, kill, a closed terminal); a closed output pipe too.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PIPE_STATUS = 128 + signal.SIGPIPE


class RunConfigError(ValueError):
    """A ``--run-config`` override that ``flwr run`` would refuse, with the reason."""


class Interrupted(Exception):
    """A stop signal arrived (raised by the handler :func:`checked_run` installs).

    Parameters
    ----------
    signum : int
        The signal; the exit status is ``128 + signum``.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.status = 128 + signum


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


def app_config_keys(pyproject: Path) -> list[str]:
    """The run-config keys an app declares (``[tool.flwr.app.config]``), flattened with dots.

    Parameters
    ----------
    pyproject : Path
        The app's ``pyproject.toml``.

    Returns
    -------
    list[str]
    """
    data = tomllib.loads(Path(pyproject).read_text())
    try:
        table = data["tool"]["flwr"]["app"]["config"]
    except KeyError as err:
        raise RunConfigError(f"{pyproject} has no [tool.flwr.app.config] table") from err
    return sorted(_flatten(table))


def _flatten(table: dict, prefix: str = "") -> Iterable[str]:
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def override_keys(overrides: Sequence[str]) -> list[str]:
    """The keys of ``--run-config`` values, split as ``flwr run`` splits them.

    Parameters
    ----------
    overrides : Sequence[str]
        Each ``--run-config`` value: ``"k=v k2='text'"`` strings, or one path to a
        ``.toml`` file (whose keys are flattened with dots, as Flower does).

    Returns
    -------
    list[str]
        In order of appearance.

    Raises
    ------
    RunConfigError
        For text that is not ``key=value`` (``flwr run`` would drop it silently).
    """
    if len(overrides) == 1 and overrides[0].endswith(".toml"):
        path = Path(overrides[0]).expanduser()
        try:
            return list(_flatten(tomllib.loads(path.read_text())))
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise RunConfigError(f"cannot read run-config file {path}: {err}") from err
    keys: list[str] = []
    for text in overrides:
        leftover = _PAIR.sub(" ", text).split()
        if leftover:
            raise RunConfigError(
                f"run-config text {' '.join(leftover)!r} is not key=value "
                "(write k=v pairs separated by spaces; quote text values: k='a b')"
            )
        keys += [key for key, _ in _PAIR.findall(text)]
    return keys


def check_run_config(
    overrides: Sequence[str], valid_keys: Sequence[str], renamed: dict | None = None
) -> None:
    """Raise if an override names a key that the app does not declare.

    Parameters
    ----------
    overrides : Sequence[str]
        The ``--run-config`` values (see :func:`override_keys`).
    valid_keys : Sequence[str]
        The app's keys (:func:`app_config_keys`).
    renamed : dict, optional
        Old key -> its new name (:func:`app_renamed_keys`).

    Raises
    ------
    RunConfigError
        Naming every unknown key and, for each, its new name or the nearest valid keys.
    """
    valid = set(valid_keys)
    problems = []
    for key in override_keys(overrides):
        if key in valid:
            continue
        if key in (renamed or {}):
            problems.append(f"run-config key {key!r} was renamed to {renamed[key]!r}")
            continue
        near = difflib.get_close_matches(key, sorted(valid), n=3, cutoff=0.6)
        if not near:  # a prefix or part of a key ("rounds" -> num-train-rounds, ...)
            near = sorted(k for k in valid if key.strip("-") and key.strip("-") in k)[:3]
        hint = f"; nearest: {', '.join(near)}" if near else ""
        problems.append(f"unknown run-config key {key!r}{hint}")
    if problems:
        raise RunConfigError(
            "; ".join(problems) + " (the keys are pyproject.toml's [tool.flwr.app.config])"
        )


def override_values(overrides: Sequence[str]) -> dict[str, str]:
    """Each override's value text, by key, later values winning (merged as one).

    ``flwr run`` refuses a key given twice in one ``--run-config`` string with a generic
    "invalid format"; the scripts append the user's overrides to their own, so a key the
    script set is given again: the later value is the user's and wins.

    Parameters
    ----------
    overrides : Sequence[str]
        The ``--run-config`` values (``k=v`` strings, or one ``.toml`` file).

    Returns
    -------
    dict[str, str]
        Key -> the value as written (TOML text: ``3``, ``'cnn'``, ``true``), in order of
        first appearance.

    Raises
    ------
    RunConfigError
        For text that is not ``key=value``, a value that is not a TOML value (naming the
        key and the value), or a ``.toml`` file given together with other overrides.
    """
    if len(overrides) == 1 and overrides[0].endswith(".toml"):
        path = Path(overrides[0]).expanduser()
        override_keys(overrides)  # readable, or a RunConfigError naming the file
        table = dict(_flat_items(tomllib.loads(path.read_text())))
        return {key: _toml_text(value) for key, value in table.items()}
    if any(text.endswith(".toml") for text in overrides):
        raise RunConfigError(
            "a .toml run-config file cannot be given together with other "
            "--run-config values (flwr run refuses it)"
        )
    override_keys(overrides)  # every pair is key=value
    values: dict[str, str] = {}
    for text in overrides:
        for key, value in _PAIR.findall(text):
            try:
                tomllib.loads(f"v = {value}")
            except tomllib.TOMLDecodeError:
                raise RunConfigError(
                    f"run-config value {key}={value} is not a number, true/false or quoted "
                    f"text (write {key}='{value}' for text)"
                ) from None
            values[key] = value
    return values


def _flat_items(table: dict, prefix: str = ""):
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _flat_items(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _toml_text(value) -> str:
    """A TOML value's text (``'text'``, ``true``, ``3``, ``0.5``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    return repr(value)


def typed_values(values: dict[str, str]) -> dict:
    """:func:`override_values`' texts as the values ``flwr run`` gives the app."""
    return {key: tomllib.loads(f"v = {text}")["v"] for key, text in values.items()}


def app_defaults(pyproject: Path) -> dict:
    """The app's run-config defaults (``[tool.flwr.app.config]``), flattened with dots."""
    data = tomllib.loads(Path(pyproject).read_text())
    return dict(_flat_items(data["tool"]["flwr"]["app"]["config"]))


def _not_flower_module(pyproject: Path, name: str):
    """``not_flower.common.<name>`` from this file's checkout when ``pyproject``'s app is
    not-flower's (``[tool.flwr.app.components] serverapp = "not_flower...."``), else
    ``None``: other apps' run configs are left to them."""
    data = tomllib.loads(Path(pyproject).read_text())
    components = data.get("tool", {}).get("flwr", {}).get("app", {}).get("components", {})
    if not str(components.get("serverapp", "")).startswith("not_flower."):
        return None
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(f"not_flower.common.{name}")


def app_renamed_keys(pyproject: Path) -> dict:
    """Old flat run-config key -> its grouped name, for not-flower's app (else empty)."""
    config = _not_flower_module(pyproject, "config")
    if config is None:
        return {}
    return _not_flower_module(pyproject, "settings").renamed_keys(config.RunConfig)


def check_values(
    pyproject: Path, values: dict, *, num_partitions: int | None = None, paths: bool = False
) -> None:
    """Check the run config's values as not-flower's ServerApp will, before anything starts.

    Applies only to an app whose ServerApp is not-flower's
    (``[tool.flwr.app.components] serverapp = "not_flower.app.server_app:app"``): its
    ``not_flower.common.config`` (standard library only, imported from this file's checkout, no
    torch) parses the defaults with the overrides, then ``not_flower.common.prestart`` checks
    what needs no data and no node: class labels against the data set's classes, and, where
    known, targets naming every client and a ``train-subset`` too small for the clients,
    and the paths (``init-checkpoint`` a file, ``audit-log`` and ``out-dir`` not under a
    file). Other apps' values are left to them.

    Parameters
    ----------
    pyproject : Path
        The app's ``pyproject.toml``.
    values : dict
        The overrides, typed (:func:`typed_values`).
    num_partitions : int | None (default: None)
        The number of clients (a simulation's ``num-supernodes``), ``None`` when not known
        here (a deployment: the ServerApp checks it with the nodes connected, before round 1).
    paths : bool (default: False)
        Whether the ServerApp runs on this machine, so that its paths can be checked here.

    Raises
    ------
    RunConfigError
        With :class:`not_flower.common.config.ConfigError`'s message (it names the key, the
        value and what is allowed).
    """
    config = _not_flower_module(pyproject, "config")
    if config is None:
        return
    prestart = _not_flower_module(pyproject, "prestart")
    try:
        cfg = config.parse_run_config({**app_defaults(pyproject), **values})
        prestart.check_before_start(cfg, num_partitions, paths=paths)
    except config.ConfigError as err:
        raise RunConfigError(str(err)) from None


def checked_args(flwr_args: Sequence[str], pyproject: Path) -> list[str]:
    """``flwr run`` arguments with their run config checked and merged into one value.

    Parameters
    ----------
    flwr_args : Sequence[str]
        What follows ``flwr run``.
    pyproject : Path
        The app's ``pyproject.toml``.

    Returns
    -------
    list[str]
        The same arguments, every ``--run-config`` / ``-c`` replaced by one
        ``--run-config`` with the merged overrides (a key given twice: the later value).

    Raises
    ------
    RunConfigError
        For an unknown key (:func:`check_run_config`), a malformed value
        (:func:`override_values`) or a value the app refuses (:func:`check_values`).
    """
    overrides = run_config_values(flwr_args)
    check_run_config(overrides, app_config_keys(pyproject), app_renamed_keys(pyproject))
    values = override_values(overrides)
    address, num_partitions = federation_facts(flwr_args)
    check_values(
        pyproject,
        typed_values(values),
        num_partitions=num_partitions,
        paths=on_this_machine(address),
    )
    rest, args, i = [], list(flwr_args), 0
    while i < len(args):
        if args[i] in ("--run-config", "-c") and i + 1 < len(args):
            i += 2
            continue
        if not args[i].startswith("--run-config="):
            rest.append(args[i])
        i += 1
    if not overrides:
        return rest
    merged = (
        overrides[0]
        if len(overrides) == 1 and overrides[0].endswith(".toml")
        else " ".join(f"{k}={v}" for k, v in values.items())
    )
    return [*rest, "--run-config", merged]


def run_config_values(
    flwr_args: Sequence[str], options: tuple[str, ...] = ("--run-config", "-c")
) -> list[str]:
    """The values given to ``--run-config`` / ``-c`` (or ``options``) in ``flwr run`` arguments."""
    values, args = [], list(flwr_args)
    for i, arg in enumerate(args):
        if arg in options and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith(f"{options[0]}="):
            values.append(arg.split("=", 1)[1])
    return values


def federation_facts(flwr_args: Sequence[str]) -> tuple[str, int | None]:
    """The connection's address and, for a simulation, its number of SuperNodes.

    The connection is ``flwr run``'s second argument, else ``[superlink] default`` of
    ``$FLWR_HOME/config.toml`` (``~/.flwr``); its ``address`` is ``":local:"`` for a local
    simulation. The number of SuperNodes is ``--federation-config``'s ``num-supernodes``,
    else the connection's (deprecated) ``options.num-supernodes``; else ``None`` (what a
    simulation's SuperLink has stored, and every deployment's node count, is not known here).

    Parameters
    ----------
    flwr_args : Sequence[str]
        What follows ``flwr run``: ``APP [CONNECTION] [options]``.

    Returns
    -------
    tuple[str, int | None]
        The address (``""`` if the connection is not found) and the number of SuperNodes.
    """
    args = list(flwr_args)
    home = Path(os.environ.get("FLWR_HOME") or "~/.flwr").expanduser()
    try:
        superlinks = tomllib.loads((home / "config.toml").read_text()).get("superlink", {})
    except (OSError, tomllib.TOMLDecodeError):
        superlinks = {}  # flwr writes a default: the `local` simulation
    name = args[1] if len(args) > 1 and not args[1].startswith("-") else None
    name = name or superlinks.get("default", "local")
    conn = superlinks.get(name) if isinstance(superlinks.get(name), dict) else {}
    address = str(conn.get("address", ":local:" if name == "local" else ""))
    if address != ":local:":
        return address, None
    given = " ".join(run_config_values(args, ("--federation-config",)))
    found = {k.replace("_", "-"): v for k, v in _PAIR.findall(given)}
    nodes = found.get("num-supernodes", (conn.get("options") or {}).get("num-supernodes"))
    return address, int(nodes) if str(nodes).isdigit() else None


def on_this_machine(address: str) -> bool:
    """Whether a connection's ServerApp runs on this machine (a simulation or a loopback)."""
    host = address.rsplit(":", 1)[0].strip("[]") if address != ":local:" else "localhost"
    return host in ("localhost", "::1") or host.startswith("127.")


def run_outcome(ls_json: str) -> tuple[str, str]:
    """Status and the first line of its details from ``flwr ls --run-id ID --format json``.

    Returns
    -------
    tuple[str, str]
        e.g. ``("finished:completed", "")`` or ``("finished:failed", "Simulation failed
        with exception: unknown model 'transformer'; ...")``; ``("unknown", why)`` if the
        output holds no run.
    """
    try:
        runs = json.loads(ls_json).get("runs") or []
    except (json.JSONDecodeError, AttributeError):
        return "unknown", f"unreadable `flwr ls` output: {ls_json.strip()[:200]!r}"
    if not runs:
        return "unknown", "`flwr ls` lists no such run"
    details = str(runs[0].get("status-details") or "").strip().splitlines()
    return str(runs[0].get("status", "unknown")), details[0] if details else ""


def failure_message(run_id: str, status: str, detail: str) -> str | None:
    """The line to print last for a run that did not complete, or ``None`` if it did."""
    if status == "finished:completed":
        return None
    return f"error: run {run_id} {status}" + (f": {detail}" if detail else "")


def _flwr_ls(
    flwr: str, connection: list[str], run_id: str, timeout: float = 60.0
) -> tuple[str, str]:
    """Poll ``flwr ls`` until the run is finished (the stream can end a moment earlier)."""
    deadline = time.monotonic() + timeout
    status, detail = "unknown", ""
    while True:
        proc = subprocess.run(
            [flwr, "ls", *connection, "--run-id", run_id, "--format", "json"],
            capture_output=True,
            text=True,
            check=False,
        )
        status, detail = run_outcome(proc.stdout)
        if status.startswith("finished") or time.monotonic() > deadline:
            return status, detail
        time.sleep(1.0)


def checked_run(flwr_args: Sequence[str], flwr: str = "flwr") -> int:
    """``flwr run FLWR_ARGS``, then its run's status: 0 only if the run completed.

    Every process started from here is stopped before this returns, whatever the outcome
    (see the module docstring).

    Parameters
    ----------
    flwr_args : Sequence[str]
        What follows ``flwr run``: ``APP [CONNECTION] [options]``.
    flwr : str (default: "flwr")
        The ``flwr`` executable.

    Returns
    -------
    int
        The exit status for the script: 2 for a bad run config (before running), flwr's
        own if it failed, 1 if the run did not complete, ``128 + signal`` when a stop
        signal arrived, 141 when our output was closed, else 0.
    """
    args = list(flwr_args)
    app = Path(args[0]) if args and not args[0].startswith("-") else Path(".")
    connection = [args[1]] if len(args) > 1 and not args[1].startswith("-") else []
    pyproject = app / "pyproject.toml"
    if pyproject.is_file():
        try:  # keys and values checked, overrides merged (later wins), before flwr starts
            args = checked_args(args, pyproject)
        except RunConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    token, seen = proctree.new_token(), {"run_id": None}
    old = {sig: signal.signal(sig, _raise_interrupted) for sig in STOP_SIGNALS}
    proc = None
    try:
        proc = subprocess.Popen(
            [flwr, "run", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env={**os.environ, proctree.TOKEN_VAR: token},
        )
        return _pass_output_and_check(proc, seen, flwr=flwr, connection=connection)
    except (Interrupted, BrokenPipeError) as err:
        _ignore_stop_signals()
        return _stop_run(err, run_id=seen["run_id"], flwr=flwr, connection=connection)
    finally:
        _ignore_stop_signals()
        proctree.stop_processes([proc.pid] if proc else [], [token])
        if proc is not None:
            proc.wait()
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _ignore_stop_signals() -> None:
    """While stopping, a second Ctrl-C must not cut the cleanup short."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _pass_output_and_check(
    proc: subprocess.Popen, seen: dict, *, flwr: str, connection: list[str]
) -> int:
    """Pass ``flwr run``'s output through, noting the run id; then the run's status.

    Parameters
    ----------
    proc : subprocess.Popen
        ``flwr run`` with its output piped (text mode).
    seen : dict
        ``seen["run_id"]`` is set as soon as the output names the run.
    flwr : str
        The ``flwr`` executable.
    connection : list[str]
        ``[CONNECTION]`` or ``[]`` (the default one).

    Returns
    -------
    int
        See :func:`checked_run`.
    """
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        found = _RUN_ID.search(line)
        if found and seen["run_id"] is None:
            seen["run_id"] = found.group(1) or found.group(2)
    code = proc.wait()
    if code != 0:
        print(
            f"error: `flwr run` exited with status {code} (see its output above)", file=sys.stderr
        )
        return code
    if seen["run_id"] is None:
        print(
            "error: `flwr run` printed no run id; cannot tell whether the run succeeded",
            file=sys.stderr,
        )
        return 1
    message = failure_message(seen["run_id"], *_flwr_ls(flwr, connection, seen["run_id"]))
    if message is not None:
        sys.stdout.flush()
        print(message, file=sys.stderr)
        return 1
    return 0


def _stop_run(err: BaseException, *, run_id: str | None, flwr: str, connection: list[str]) -> int:
    """After a stop signal or a closed output: ask the SuperLink to stop the run.

    Parameters
    ----------
    err : Interrupted | BrokenPipeError
        What happened.
    run_id : str | None
        The run ``flwr run`` started, if its output said so already.
    flwr : str
        The ``flwr`` executable.
    connection : list[str]
        ``[CONNECTION]`` or ``[]``.

    Returns
    -------
    int
        ``128 + signal``, or 141 for a closed output.
    """
    if isinstance(err, Interrupted):
        status, why = err.status, str(err)
    else:  # our stdout is a closed pipe: later writes (and the exit flush) go nowhere
        status, why = PIPE_STATUS, "output closed"
        _discard_stdout()
    _say(f"{why}: stopping run {run_id or '(not started)'} and every process it started")
    if run_id is not None:
        try:
            subprocess.run(
                [flwr, "stop", run_id, *connection],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            pass  # its processes are stopped anyway
    return status


def _discard_stdout() -> None:
    """Point stdout at /dev/null (after a write to a closed pipe failed)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


def _say(line: str) -> None:
    """Print to stderr; a closed stderr is not an error (the cleanup must go on)."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """``check-run-config [--app DIR] OVERRIDE...`` or ``run FLWR_RUN_ARGS...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["check-run-config"]:
        rest, app, nodes = args[1:], Path("."), None
        if rest[:1] == ["--app"] and len(rest) > 1:
            app, rest = Path(rest[1]), rest[2:]
        if rest[:1] == ["--num-clients"] and len(rest) > 1 and rest[1].isdigit():
            nodes, rest = int(rest[1]), rest[2:]
        try:
            pyproject = app / "pyproject.toml"
            check_run_config(rest, app_config_keys(pyproject), app_renamed_keys(pyproject))
            values = typed_values(override_values(rest))
            check_values(app / "pyproject.toml", values, num_partitions=nodes, paths=True)
        except (RunConfigError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    if args[:1] == ["run"]:
        return checked_run(args[1:])
    print(
        'usage: cli.py check-run-config [--app DIR] [--num-clients N] "k=v ..."... | '
        "cli.py run APP [CONNECTION] "
        "[flwr run options]",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
