"""The fixed-seed results of every method are those recorded in tests/golden/ (bit for bit).

Each method runs through the real ServerApp and ClientApp in process
(:mod:`tests.golden_runs`), so the run is deterministic and the comparison is exact:
every accuracy, loss, participant list, byte count and model metric must equal the
recorded value (JSON equality of floats, i.e. bitwise). A refactoring that changes any
of them fails here; an intended change of behaviour re-records the files and says why.
"""

from __future__ import annotations

import json

import pytest

from tests.golden_runs import GOLDEN_DIR, METHODS, run


@pytest.mark.e2e  # a whole fixed-seed run of the app per method (minutes on a busy machine)
@pytest.mark.parametrize("method", METHODS)
def test_fixed_seed_results_are_unchanged(method):
    golden = json.loads((GOLDEN_DIR / f"{method}.json").read_text())
    fresh = json.loads(json.dumps(run(method), sort_keys=True))
    assert fresh["rounds"] == golden["rounds"]
    assert fresh == golden
