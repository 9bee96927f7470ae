"""No branch on a method's name outside the method registry.

What differs between methods (whether it recovers, the model its step leaves, a history
folder, its strategy, its client handlers) is an attribute of its
:class:`not_flower.common.methods.Method`; the app reads the attribute. A comparison of a
``method`` value with a method's name (``cfg.method == "retrain"``, ``method in ("not",
...)``) or a mapping keyed by method names anywhere in ``not_flower`` but the registry
fails here. The experiments, which compare methods with each other (Retrain is every
comparison's reference), are the exception.
"""

from __future__ import annotations

import ast
from pathlib import Path

from not_flower.common.methods import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
EXEMPT = {"not_flower/common/methods.py"}
NAMES = set(REGISTRY)


def _mentions_method(node: ast.AST) -> bool:
    return any(
        (isinstance(n, ast.Name) and "method" in n.id)
        or (isinstance(n, ast.Attribute) and "method" in n.attr)
        or (isinstance(n, ast.Constant) and n.value == "method")  # record.get("method")
        for n in ast.walk(node)
    )


def _method_names(node: ast.AST) -> set[str]:
    """The method names a literal holds (a string, or a tuple/list/set of them)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value} & NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(_method_names(e) for e in node.elts)) if node.elts else set()
    return set()


def method_branches(source: str) -> list[tuple[int, str]]:
    """(line, what) for each comparison of a method value with a method's name and each
    mapping keyed by method names, in Python source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            names = set().union(*(_method_names(s) for s in sides))
            if names and any(_mentions_method(s) for s in sides):
                found.append((node.lineno, f"compares a method with {sorted(names)}"))
        elif isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)} & NAMES
            if keys and len(keys) == len(node.keys):
                found.append((node.lineno, f"a mapping keyed by methods {sorted(keys)}"))
    return found


def test_the_check_finds_branches_on_method_names():
    source = (
        'if cfg.method == "retrain":\n    pass\n'
        'x = method in ("not", "ft")\n'
        'name = {"retrain": "retrained"}.get(cfg.method)\n'
        'ok = spec.recovers and phase == "recovery"\n'
        'negated = first.get("method") == "not"\n'
    )
    assert sorted(line for line, _ in method_branches(source)) == [1, 3, 4, 6]


def test_no_branch_on_a_method_name_outside_the_registry():
    found = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in sorted((ROOT / "not_flower").rglob("*.py"))
        if path.relative_to(ROOT).as_posix() not in EXEMPT
        and "experiments" not in path.relative_to(ROOT).parts
        for line, what in method_branches(path.read_text())
    ]
    assert found == [], "\n".join(found)
