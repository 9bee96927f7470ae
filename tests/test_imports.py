"""What importing costs: the strategies import without torch; the ClientApp loads no server
code; what type checkers see of ``strategies`` is its ``__all__``."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BLOCK_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test: " + name)
sys.meta_path.insert(0, NoTorch())
"""


def _python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.e2e  # a fresh Python
def test_the_wrapper_and_not_import_and_negate_without_torch():
    code = (
        BLOCK_TORCH
        + """
import json
import numpy as np
from flwr.app import Array, ArrayRecord
from strategies import NegationPlan, NoT, Negation, Unlearning
from flwr.serverapp.strategy import FedProx
strategy = Unlearning(FedProx(proximal_mu=0.1), Negation(NegationPlan((), ("w",))))
arrays = ArrayRecord({"w": Array(np.arange(3, dtype=np.float32)),
                      "b": Array(np.ones(2, np.float32))})
negated = NoT(["w"]).unlearner.plan.apply(arrays)
print(json.dumps({"torch": "torch" in sys.modules, "w": negated["w"].numpy().tolist(),
                  "b": negated["b"].numpy().tolist()}))
"""
    )
    out = json.loads(_python(code))
    assert out == {"torch": False, "w": [-0.0, -1.0, -2.0], "b": [1.0, 1.0]}


@pytest.mark.e2e  # a fresh Python
def test_plan_negation_still_loads_torch_when_asked_for():
    code = (
        BLOCK_TORCH
        + """
try:
    from strategies import plan_negation
except ImportError as err:
    print("blocked:", "torch" in str(err))
"""
    )
    assert _python(code) == "blocked: True"


@pytest.mark.e2e  # a fresh Python
def test_the_clientapp_imports_no_server_strategy():
    code = """
import sys
import not_flower.app.client_app
print(",".join(sorted(m for m in sys.modules if m.startswith("strategies"))))
"""
    loaded = set(_python(code).split(","))
    # the identity protocol (client and server both speak it), PGD's client half and the
    # method registry's requirements record (a dataclass, no Flower, no torch) only
    assert loaded == {
        "strategies",
        "strategies.identity",
        "strategies.pgd_ascent",
        "strategies.requirements",
    }


@pytest.mark.e2e  # a fresh Python
def test_a_clientapp_on_digits_imports_no_scikit_learn():
    """Flower starts one ClientApp process per message in a deployment: the import and the
    digits data load stay clear of scikit-learn and SciPy (about a second of each start)."""
    code = """
import sys
import not_flower.app.client_app
from not_flower.task.data import load_dataset
load_dataset("digits")
heavy = {m.split(".")[0] for m in sys.modules} & {"sklearn", "scipy", "pandas", "matplotlib"}
print(",".join(sorted(heavy)) or "none")
"""
    assert _python(code) == "none"


def _type_checking_imports(path: Path) -> dict[str, str]:
    """Name -> module (relative, ``.x``) of the imports under ``if TYPE_CHECKING:``."""
    names: dict[str, str] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom), ast.unparse(imp)
                names.update({a.asname or a.name: "." * imp.level + imp.module for a in imp.names})
    return names


def test_type_checkers_see_every_public_name_where_it_is_loaded_from():
    import strategies

    seen = _type_checking_imports(ROOT / "strategies" / "__init__.py")
    assert sorted(seen) == sorted(strategies.__all__)
    assert len(set(strategies.__all__)) == len(strategies.__all__) == 22
    assert seen == strategies._NAMES  # the lazy loader loads each from the same module
    assert set(strategies.__all__) <= set(dir(strategies))
    for name in strategies.__all__:
        assert getattr(strategies, name) is getattr(import_module(f"strategies{seen[name]}"), name)
