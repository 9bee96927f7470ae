"""What importing costs: the strategies import without torch; the ClientApp loads no server code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # each test runs a fresh Python

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


def test_the_clientapp_imports_no_server_strategy():
    code = """
import sys
import not_flower.client_app
print(",".join(sorted(m for m in sys.modules if m.startswith("strategies"))))
"""
    loaded = set(_python(code).split(","))
    # the identity protocol (client and server both speak it) and PGD's client half only
    assert loaded == {"strategies", "strategies.identity", "strategies.pgd_ascent"}
