"""The packages of ``not_flower`` import only downwards, without cycles or private names.

The layers, lowest first (``not_flower/__init__.py`` says what each holds): ``common``,
``audit``, ``task``, ``evaluation``, ``app``, ``experiments``. A module may import its own
package and the packages below it, never one above: the app never imports the experiments,
the task never the evaluation. ``launch`` (the ``flwr run`` wrapper and the local
SuperLink, runnable as files) imports nothing else from ``not_flower``; ``strategies``, the
library, imports nothing from it at all. Every ``import`` statement counts, those inside
functions too. The README's code map (``docs/guide/code-map.md``) draws the same layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "not_flower"
LAYERS = ("common", "audit", "task", "evaluation", "app", "experiments")
APART = ("launch",)


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path = ROOT) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import statement in path."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append((module, [alias.name for alias in node.names], node.lineno))
    return found


def _package_of(module: str) -> str | None:
    """The subpackage of a ``not_flower`` module (``not_flower.app.x`` -> ``app``)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "not_flower" and len(parts) > 1 else None


def _sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def layer_violations(path: Path, root: Path = ROOT) -> list[str]:
    """What path imports against the layers: upward, into or out of launch, private names."""
    own = _package_of(_module_name(path, root))
    found = []
    for module, names, line in _imports(path, root):
        if not module.startswith("not_flower"):
            continue
        other = _package_of(module)
        where = f"{path.relative_to(root)}:{line} imports {module}"
        if own in APART or other in APART:
            if own != other:
                found.append(f"{where}: launch stands apart (standard library only)")
        elif other is None:  # `import not_flower` / `from not_flower import x`
            if any(n != "__version__" for n in names):
                found.append(f"{where}: import from the subpackages, not the top")
        elif LAYERS.index(other) > LAYERS.index(own):
            found.append(f"{where}: {own} may import only {LAYERS[: LAYERS.index(own) + 1]}")
        elif other != own and [n for n in names if n.startswith("_")]:
            found.append(f"{where}: a private name across packages ({names})")
    return found


#: The layers below the app take small specs (``DataSpec``, ``ReferenceSpec``), never the
#: whole run config: none of their modules imports or names ``RunConfig``.
SPEC_ONLY = ("task", "evaluation")
_CONFIG = "not_flower.common.config"


def run_config_uses(path: Path, root: Path = ROOT) -> list[str]:
    """Where path imports the run config (``RunConfig``, its parser or its module) or names it."""
    where = path.relative_to(root)
    found = [
        f"{where}:{line} imports {module} {names}"
        for module, names, line in _imports(path, root)
        if (module == _CONFIG and {"RunConfig", "parse_run_config"} & set(names))
        or (module == _CONFIG and not names)  # import not_flower.common.config
        or (module == "not_flower.common" and "config" in names)
    ]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        name = getattr(node, "id", None) or getattr(node, "attr", None)
        if isinstance(node, (ast.Name, ast.Attribute)) and name == "RunConfig":
            found.append(f"{where}:{node.lineno} names RunConfig")
    return found


def test_every_module_is_in_a_layer():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert loose == [], f"modules outside the subpackages: {loose}"
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(LAYERS) | set(APART), packages


def test_imports_go_down_only_and_take_no_private_names():
    found = [v for path in _sources(PACKAGE) for v in layer_violations(path)]
    assert found == [], "\n".join(found)


def test_no_import_cycle_between_modules():
    modules = {_module_name(p) for p in _sources(PACKAGE)}
    graph: dict[str, set[str]] = {}
    for path in _sources(PACKAGE):
        deps = set()
        for module, names, _ in _imports(path):
            deps |= {m for m in [module, *(f"{module}.{n}" for n in names)] if m in modules}
        graph[_module_name(path)] = deps - {_module_name(path)}
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        for dep in sorted(graph[node]):
            assert dep not in trail, (
                f"import cycle: {' -> '.join([*trail[trail.index(dep) :], dep])}"
            )
            if dep not in done:
                visit(dep, [*trail, dep])
        done.add(node)

    for node in sorted(graph):
        if node not in done:
            visit(node, [node])


def test_task_and_evaluation_never_take_the_run_config():
    found = [
        v for pkg in SPEC_ONLY for path in _sources(PACKAGE / pkg) for v in run_config_uses(path)
    ]
    assert found == [], "\n".join(found)


def test_the_run_config_check_catches_an_import_and_an_annotation(tmp_path):
    """The check itself, on a made-up tree: importing or naming ``RunConfig`` is reported."""
    task = tmp_path / "not_flower" / "task"
    task.mkdir(parents=True)
    (task / "named.py").write_text("from not_flower.common.config import RunConfig\n")
    (task / "module.py").write_text("from not_flower.common import config\n")
    (task / "typed.py").write_text("def f(cfg: RunConfig) -> None: ...\n")
    (task / "fine.py").write_text("from not_flower.common import progress\n")
    found = {p.stem: run_config_uses(p, tmp_path) for p in task.glob("*.py")}
    assert "imports not_flower.common.config" in found["named"][0]
    assert "imports not_flower.common" in found["module"][0]
    assert "names RunConfig" in found["typed"][0]
    assert found["fine"] == []


def test_the_library_imports_nothing_of_the_app():
    for path in _sources(ROOT / "strategies"):
        for module, _, line in _imports(path):
            assert not module.startswith("not_flower"), f"{path.name}:{line} imports {module}"


def test_the_check_catches_an_upward_import_a_private_name_and_launch(tmp_path):
    """The check itself, on a made-up tree: each kind of violation is reported."""
    task = tmp_path / "not_flower" / "task"
    task.mkdir(parents=True)
    (task / "up.py").write_text("from not_flower.evaluation.metrics import evaluate_model\n")
    (task / "private.py").write_text("from not_flower.audit.record import _request_part\n")
    (task / "relative.py").write_text("from ..launch import proctree\n")
    (task / "fine.py").write_text("from . import data\nfrom not_flower.common import config\n")
    found = {p.stem: layer_violations(p, tmp_path) for p in task.glob("*.py")}
    assert "task may import only" in found["up"][0]
    assert "private name" in found["private"][0]
    assert "launch stands apart" in found["relative"][0]
    assert found["fine"] == []


def test_the_code_maps_draw_these_layers():
    """The README's one-line map and the code-map page's picture list the layers as here."""
    readme = (ROOT / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("experiments -> "))
    assert line.split("  ")[0].split(" -> ") == list(reversed(LAYERS)), line
    assert "launch: apart" in line and "strategies: the library" in line
    page = (ROOT / "docs" / "guide" / "code-map.md").read_text()
    drawn = [x.split()[0] for x in page.split("```text")[1].split("```")[0].splitlines() if x]
    drawn = [x.removeprefix("not_flower.") for x in drawn if x.startswith("not_flower.")]
    assert drawn == [*reversed(LAYERS), *APART], drawn
