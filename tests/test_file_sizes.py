"""Every module of strategies/ and not_flower/ says what it is for and stays readable in size.

Each ``.py`` file must open with a docstring, hold at most ``MAX_FILE_LINES`` lines, and
have no function (or method, or nested function) longer than ``MAX_FUNCTION_LINES``
lines, counted from its ``def`` line to its last line. The files and functions that are
over a limit today are listed below as known debt, with their current sizes: each may
shrink but not grow, and nothing new may join the lists.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("strategies", "not_flower")
# Counted in ruff-formatted lines. Formatting the same code with ruff (#29.6) made the two
# packages 11 % longer (17,258 -> 19,107 lines; argument lists one per line), so the limits,
# 600 and 80 in the denser hand layout, were raised to match; no file or function grew in
# content.
MAX_FILE_LINES = 700
MAX_FUNCTION_LINES = 100

#: Files over ``MAX_FILE_LINES`` today, with their line counts then.
KNOWN_LONG_FILES: dict[str, int] = {}

#: Functions over ``MAX_FUNCTION_LINES`` today, as (file, qualified name), with their lengths then.
KNOWN_LONG_FUNCTIONS: dict[tuple[str, str], int] = {}


def function_lengths(source: str) -> dict[str, int]:
    """Length in lines of every function in ``source``, by qualified name.

    Parameters
    ----------
    source : str
        Python source.

    Returns
    -------
    dict[str, int]
        ``{"f": 3, "C.method": 5, "f.inner": 2, ...}``: from the ``def`` line to the
        function's last line, decorators not counted.
    """
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    lengths[name] = child.end_lineno - child.lineno + 1
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return lengths


def _modules() -> list[str]:
    return sorted(
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    )


MODULES = _modules()


def test_function_lengths_counts_def_to_last_line():
    source = (
        "@decorator\n"
        "def f(x):\n"
        "    def inner():\n"
        "        return 1\n"
        "    return inner()\n"
        "\n"
        "class C:\n"
        "    async def m(self):\n"
        "        pass\n"
    )
    assert function_lengths(source) == {"f": 4, "f.inner": 2, "C.m": 2}


def test_the_packages_are_found():
    assert "not_flower/evaluation/metrics.py" in MODULES
    assert "strategies/negation.py" in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_module_opens_with_a_docstring(module):
    tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
    docstring = ast.get_docstring(tree)
    assert docstring and docstring.strip(), f"{module} does not open with a docstring"


@pytest.mark.parametrize("module", MODULES)
def test_module_size_within_limit_or_known_debt(module):
    lines = len((ROOT / module).read_text(encoding="utf-8").splitlines())
    allowed = KNOWN_LONG_FILES.get(module, MAX_FILE_LINES)
    assert lines <= allowed, f"{module} has {lines} lines; the limit is {MAX_FILE_LINES}" + (
        f" (known debt, recorded at {allowed}: it may shrink, not grow)"
        if module in KNOWN_LONG_FILES
        else "; split it along its concerns"
    )


@pytest.mark.parametrize("module", MODULES)
def test_functions_within_limit_or_known_debt(module):
    lengths = function_lengths((ROOT / module).read_text(encoding="utf-8"))
    too_long = []
    for name, length in sorted(lengths.items()):
        allowed = KNOWN_LONG_FUNCTIONS.get((module, name), MAX_FUNCTION_LINES)
        if length > allowed:
            too_long.append(f"{name}: {length} lines (allowed {allowed})")
    assert not too_long, (
        f"functions of {module} over the limit of {MAX_FUNCTION_LINES} lines (known debt "
        f"may shrink, not grow): " + "; ".join(too_long)
    )


def test_known_debt_lists_do_not_grow():
    # The debt is paid: every file and function is within its limit, and a new entry
    # would hide a regression.
    assert not KNOWN_LONG_FILES and not KNOWN_LONG_FUNCTIONS
    for module, size in KNOWN_LONG_FILES.items():
        assert size > MAX_FILE_LINES, f"{module} at {size} lines is not debt; drop it"
    for (module, name), size in KNOWN_LONG_FUNCTIONS.items():
        assert size > MAX_FUNCTION_LINES, f"{module}:{name} at {size} lines is not debt; drop it"
