"""docker/: the compose file is valid (`docker-compose config`), the app image is built
FROM Flower's SuperExec image at the pinned version with not-flower installed, and the
compose topology (SuperLink, ServerApp executor, 3 SuperNodes with `--isolation process`
and one ClientApp executor each) runs for real: every service's command and flags are
taken from the compose file and started as a plain process (service hostnames replaced
by 127.0.0.1, ports by free ones), then `flwr run` trains, unlearns and recovers over it.

No container engine runs here, so images are not built; `docker-compose` (Debian package
`docker-compose`) only validates and normalises the file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib

import flwr
import pytest
import yaml
from packaging.requirements import Requirement

from tests.deploy_utils import (
    DEPLOY,
    FAST,
    ROOT,
    Deployment,
    assert_forgotten,
    cmdline,
    descendants,
    free_port,
    load_results,
    pid_alive,
    processes_mentioning,
    rounds,
    wait_port,
    write_connection,
)

pytestmark = pytest.mark.e2e  # docker-compose, sed and a Flower deployment as processes

DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
NODES = 3


def _compose_env() -> dict:
    """Environment for Debian's docker-compose (a /usr/bin/python3 program): no venv vars."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"
    }


_VARIABLE = re.compile(r"\$(?:\$|\{(\w+)(?:(:?-)([^}]*))?\}|(\w+))")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution, as `docker-compose config` applies it.

    ``${VAR}`` and ``$VAR`` take the variable's value (empty when unset),
    ``${VAR:-default}`` the default when VAR is unset or empty, ``${VAR-default}`` the
    default when VAR is unset, and ``$$`` is a literal ``$``.

    Parameters
    ----------
    text : str
        The compose file's text.
    env : dict[str, str]
        The variables (docker-compose reads the environment).

    Returns
    -------
    str
    """

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, default = match.group(2), match.group(3) or ""
        value = env.get(name)
        if op == ":-":
            return value if value else default
        if op == "-":
            return default if value is None else value
        return value or ""

    return _VARIABLE.sub(substitute, text)


def _compose_fallback() -> dict:
    """The compose file read as docker-compose reads it, without docker-compose: YAML after
    the environment's variables are substituted (so the same assertions hold)."""
    return yaml.safe_load(interpolate(COMPOSE.read_text(), dict(os.environ)))


def _compose_config() -> dict:
    """The compose file as `docker-compose config` normalises it (else read as it would)."""
    exe = shutil.which("docker-compose")
    if exe is None:
        return _compose_fallback()
    res = subprocess.run(
        [exe, "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env=_compose_env(),
    )
    if res.returncode != 0 and "Traceback" in res.stderr:  # the tool itself is broken here
        return _compose_fallback()
    assert res.returncode == 0, res.stderr
    return yaml.safe_load(res.stdout)


def _flags(args: list[str]) -> dict[str, str | None]:
    """--flag value pairs of a command (None for a flag without value)."""
    out: dict[str, str | None] = {}
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            nxt = args[i + 1] if i + 1 < len(args) else None
            out[arg] = None if nxt is None or nxt.startswith("--") else nxt
    return out


def _dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S*)", DOCKERFILE.read_text(), re.M))


def _dockerfile_arg_value(name: str) -> str:
    """An ARG's default, without its quotes."""
    match = re.search(rf'^ARG {name}=("?)(.*)\1$', DOCKERFILE.read_text(), re.M)
    assert match, f"no ARG {name}= in {DOCKERFILE}"
    return match.group(2)


def _constraint_pins() -> dict[str, str]:
    """constraints.txt as ``{name: version}``."""
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pairs = [line.split("#", 1)[0].strip().split("==") for line in lines]
    return {p[0]: p[1] for p in pairs if len(p) == 2}


def _dockerfile_sed(target: str) -> str:
    """Run the Dockerfile's ``sed -i -e '...' ... TARGET`` on the repository's TARGET and
    return what it makes (the file itself is not changed)."""
    text = DOCKERFILE.read_text()
    found = re.search(rf"sed -i ((?:-e '[^']*'\s*(?:\\\n\s*)?)+){re.escape(target)}", text)
    assert found, f"no `sed -i ... {target}` in {DOCKERFILE}"
    exprs = re.findall(r"-e '([^']*)'", found.group(1))
    res = subprocess.run(
        ["sed", *[a for e in exprs for a in ("-e", e)]],
        input=(ROOT / target).read_text(),
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def _entrypoint(service: dict) -> str:
    """The executable a service runs: the app image's ENTRYPOINT, or Flower's image's."""
    build = service.get("build")
    if build and build.get("target") == "app":
        match = re.search(r'^ENTRYPOINT \["([^"]+)"\]', DOCKERFILE.read_text(), re.M)
        return match.group(1)
    image = service["image"]
    if "superlink" in image:
        return "flower-superlink"  # flwr/superlink's entrypoint
    if image.startswith("flwr/supernode:"):
        return "flower-supernode"  # flwr/supernode's entrypoint
    raise AssertionError(f"unknown image {image}")


# -- the files ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, env, expected",
    [
        ('"${SUPERLINK_PORT:-8000}:8000"', {}, '"8000:8000"'),
        ('"${SUPERLINK_PORT:-8000}:8000"', {"SUPERLINK_PORT": ""}, '"8000:8000"'),
        ('"${SUPERLINK_PORT-8000}:8000"', {"SUPERLINK_PORT": ""}, '":8000"'),
        ('"${SUPERLINK_PORT:-8000}:8000"', {"SUPERLINK_PORT": "9100"}, '"9100:8000"'),
        ("image: x:${V}-$V $$HOME", {"V": "1"}, "image: x:1-1 $HOME"),
    ],
)
def test_fallback_substitutes_variables_as_compose_does(text, env, expected):
    assert interpolate(text, env) == expected


def test_fallback_reads_the_file_as_docker_compose_does():
    """Without docker-compose the test reads the same values (the README's test command
    passes on a machine without it); with it, both readings agree."""
    env = {k: v for k, v in os.environ.items() if k not in ("SUPERLINK_PORT", "FLWR_VERSION")}
    cfg = yaml.safe_load(interpolate(COMPOSE.read_text(), env))
    assert "8000:8000" in [str(p) for p in cfg["services"]["superlink"]["ports"]]
    assert cfg["services"]["supernode-0"]["image"] == f"flwr/supernode:{flwr.__version__}"
    assert "${" not in yaml.safe_dump(cfg)


def test_compose_config_is_valid():
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install -y docker-compose)")
    probe = subprocess.run(
        ["docker-compose", "version"],
        capture_output=True,
        text=True,
        env=_compose_env(),
        timeout=60,
    )
    if probe.returncode != 0:
        pytest.skip(f"docker-compose is installed but does not run here: {probe.stderr[-300:]}")
    res = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env=_compose_env(),
    )
    assert res.returncode == 0, res.stderr
    cfg = _compose_config()
    assert set(cfg["services"]) == {
        "superlink",
        "superexec-serverapp",
        *(f"supernode-{i}" for i in range(NODES)),
        *(f"superexec-clientapp-{i}" for i in range(NODES)),
    }
    assert set(cfg["volumes"]) >= {"superlink-state", "runs", "requests"}


def test_dockerfile_builds_app_from_flower_superexec_at_pinned_version():
    text = DOCKERFILE.read_text()
    args = _dockerfile_args()
    assert args["FLWR_VERSION"] == flwr.__version__ == "1.42.0"
    assert args["PYTHON_TAG"] == "py3.11-ubuntu24.04"
    froms = re.findall(r"^FROM (\S+) AS (\w+)", text, re.M)
    assert ("flwr/superexec:${FLWR_VERSION}-${PYTHON_TAG}", "app") in froms
    assert ("flwr/superlink:${FLWR_VERSION}", "superlink") in froms
    assert froms[-1][1] == "app", "the app image must be the default (last) stage"
    # not-flower's packages (as pyproject declares them) are copied and installed
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for pkg in pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]:
        assert re.search(rf"^COPY .*\b{pkg}\b", text, re.M), pkg
    assert re.search(r"^COPY .*pyproject\.toml .*constraints\.txt", text, re.M)
    assert re.search(r"^!constraints\.txt$", (DOCKER / "Dockerfile.dockerignore").read_text(), re.M)
    assert re.search(r'^ENTRYPOINT \["flower-superexec"\]', text, re.M)
    # torch's own layer installs the tested torch pins (constraints.txt) unless a build
    # argument says otherwise
    pins = _constraint_pins()
    torch_pins = sorted(f"{n}=={pins[n]}" for n in ("torch", "torchvision"))
    assert sorted(_dockerfile_arg_value("TORCH_REQUIREMENTS").split()) == torch_pins
    assert "pip install --no-cache-dir --find-links /tmp/wheelhouse ${TORCH_REQUIREMENTS}" in text
    # the sed in the Dockerfile keeps Flower's range but drops the simulation extra and the
    # torch lines (installed in the layer before)
    deps = pyproject["project"]["dependencies"]
    flwr_dep = next(d for d in deps if d.startswith("flwr[simulation]"))
    torch_deps = {d for d in deps if re.match(r"(torch|torchvision)\b", d)}
    assert len(torch_deps) == 2
    image_deps = tomllib.loads(_dockerfile_sed("pyproject.toml"))["project"]["dependencies"]
    assert flwr_dep.replace("flwr[simulation]", "flwr") in image_deps
    assert not any("simulation" in d or d.startswith("torch") for d in image_deps)
    assert set(deps) - set(image_deps) == {flwr_dep, *torch_deps}
    # the rest is installed at constraints.txt's versions, less the pins of what the layers
    # before hold (Flower and Ray from the base image, torch from its own layer)
    grep = re.search(r"grep -v -E '([^']*)' constraints\.txt > (\S+)", text)
    assert grep, "the Dockerfile filters no constraints"
    app_constraints = subprocess.run(
        ["grep", "-v", "-E", grep.group(1)],
        input=(ROOT / "constraints.txt").read_text(),
        capture_output=True,
        text=True,
    ).stdout
    kept = {line.split("==")[0] for line in app_constraints.splitlines() if "==" in line}
    assert kept == set(pins) - {"flwr", "ray", "torch", "torchvision"}
    assert "numpy" in kept and "scikit-learn" in kept
    assert re.search(
        rf"pip install --no-cache-dir --find-links /tmp/wheelhouse \\\n\s*-c {grep.group(2)} \. ",
        text,
    )
    # Flower's pin in constraints.txt is the image's version, inside pyproject's range
    assert pins["flwr"] == args["FLWR_VERSION"]
    assert Requirement(flwr_dep).specifier.contains(pins["flwr"])


def test_compose_services_images_and_flags():
    cfg = _compose_config()
    services = cfg["services"]
    version = _dockerfile_args()["FLWR_VERSION"]

    link = services["superlink"]
    assert link["build"]["target"] == "superlink"
    flags = _flags(link["command"])
    assert flags["--isolation"] == "process"
    assert flags["--database"] == "state/state.db"
    assert "--insecure" in flags and "--disable-runtime-dependency-installation" in flags
    assert flags["--host"] == "0.0.0.0"
    port = flags["--port"]
    assert any(v.startswith("superlink-state:/app/state") for v in link["volumes"])
    assert any(str(p).startswith(f"{port}:{port}") for p in link["ports"]) or any(
        isinstance(p, dict) and str(p.get("target")) == port for p in link["ports"]
    )

    server = services["superexec-serverapp"]
    assert server["build"]["target"] == "app"
    assert _flags(server["command"]) == {
        "--insecure": None,
        "--runtime-api-address": f"superlink:{port}",
    }
    assert {v.split(":")[1] for v in server["volumes"]} >= {"/app/runs", "/app/requests"}

    for i in range(NODES):
        node = services[f"supernode-{i}"]
        assert node["image"] == f"flwr/supernode:{version}"
        nf = _flags(node["command"])
        assert nf["--superlink"] == f"superlink:{port}"
        assert nf["--isolation"] == "process"
        assert nf["--host"] == "0.0.0.0"
        assert nf["--node-config"] == f"partition-id={i} num-partitions={NODES}"
        client = services[f"superexec-clientapp-{i}"]
        assert client["build"]["target"] == "app"
        assert _flags(client["command"]) == {
            "--insecure": None,
            "--runtime-api-address": f"supernode-{i}:{nf['--port']}",
        }


def _script_flags(script: str, exe: str) -> set[str]:
    """Flags of the `exe ...` command in a deploy script (with continuation lines)."""
    text = (DEPLOY / script).read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if re.search(rf"nf_start .*\b{exe} ", ln))
    return set(re.findall(r"(--[a-z][a-z-]*)", line.split(exe, 1)[1]))


def test_compose_flags_are_the_local_scripts_plus_process_isolation():
    """Same flags as examples/deploy/local.sh, plus what containers need: process
    isolation and listening on all interfaces of the container."""
    services = _compose_config()["services"]
    link = set(_flags(services["superlink"]["command"]))
    assert link == _script_flags("local.sh", "flower-superlink") | {"--isolation", "--host"}
    node = set(_flags(services["supernode-0"]["command"]))
    assert node == _script_flags("local.sh", "flower-supernode") | {"--isolation", "--host"}
    # what netns.sh (separate hosts) runs is what the containers run, less process isolation
    assert _script_flags("netns.sh", "flower-superlink") | {"--isolation"} == link
    assert _script_flags("netns.sh", "flower-supernode") | {"--isolation", "--host"} == node


# -- the topology, for real --------------------------------------------------------------
def _process_commands(
    cfg: dict, link_port: int, node_ports: dict[str, int]
) -> dict[str, list[str]]:
    """Each compose service's command as a process on this machine."""
    hosts = {"superlink": link_port, **node_ports}
    commands = {}
    for name, service in cfg["services"].items():
        args = [_entrypoint(service)]
        flags = service["command"]
        for i, arg in enumerate(flags):
            prev = flags[i - 1] if i else ""
            if prev == "--host":
                arg = "127.0.0.1"
            elif prev == "--port":
                arg = str(hosts[name])
            elif ":" in arg and arg.split(":")[0] in hosts:
                arg = f"127.0.0.1:{hosts[arg.split(':')[0]]}"
            args.append(arg)
        commands[name] = args
    return commands


def _containers_run_the_topology() -> str | None:
    """Why the topology need not run as processes here: a container engine with Compose v2
    answers, so ``tests/test_docker_compose.py`` runs the same topology in containers (a
    stronger check, and a minute of CI saved); ``None`` where none answers."""
    from tests.test_docker_compose import _docker, _engine_answers

    env = dict(os.environ)
    if shutil.which("docker") is None or not _engine_answers(env):
        return None
    if _docker(env, "compose", "version", check=False).returncode != 0:
        return None
    return "an engine with Compose v2 answers: tests/test_docker_compose.py runs it in containers"


def test_compose_topology_runs_as_processes(tmp_path):
    reason = _containers_run_the_topology()
    if reason:
        pytest.skip(reason)
    cfg = _compose_config()
    dep = Deployment(tmp_path / "work", connection="docker")
    node_ports = {f"supernode-{i}": free_port() for i in range(NODES)}
    commands = _process_commands(cfg, dep.port, node_ports)
    assert commands["superlink"][:3] == ["flower-superlink", "--insecure", "--isolation"]
    # the container's working directory (/app) with its state volume (/app/state)
    link_dir = tmp_path / "superlink-app"
    (link_dir / "state").mkdir(parents=True)
    out = tmp_path / "runs" / "demo"
    with dep:
        dep.start("superlink", commands["superlink"], cwd=link_dir)
        wait_port(
            "127.0.0.1", dep.port, proc=dep.procs["superlink"], log=lambda: dep.log("superlink")
        )
        write_connection(dep.flwr_home, dep.connection, dep.address)
        dep.start("superexec-serverapp", commands["superexec-serverapp"], cwd=tmp_path)
        for i in range(NODES):
            dep.start(f"supernode-{i}", commands[f"supernode-{i}"])
            wait_port(
                "127.0.0.1",
                node_ports[f"supernode-{i}"],
                proc=dep.procs[f"supernode-{i}"],
                log=lambda i=i: dep.log(f"supernode-{i}"),
            )
            dep.start(f"superexec-clientapp-{i}", commands[f"superexec-clientapp-{i}"])
        dep.wait_nodes(NODES)
        dep.run(f"out-dir='{out}' num-train-rounds=2 recovery.rounds=1 unlearn.clients='2' {FAST}")
        # process isolation: the SuperLink / SuperNodes started no executor of their own
        for name in ["superlink", *node_ports]:
            assert "Starting Flower SuperExec" not in dep.log(name)
            assert not [
                p for p in descendants(dep.procs[name].pid) if "flower-superexec" in cmdline(p)
            ]
    assert (link_dir / "state" / "state.db").is_file()  # --database state/state.db
    results = load_results(out)
    assert [r["round"] for r in rounds(results)] == [1, 2, 3]
    assert_forgotten(results, 2)
    assert rounds(results)[-1]["participants"] == [0, 1]
    assert not [p for p in dep.stopped if pid_alive(p)]
    assert not processes_mentioning(f"127.0.0.1:{dep.port}")
