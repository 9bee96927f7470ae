"""The fixed-seed results of every method are those recorded in tests/golden/ (bit for bit).

Each method runs through the real ServerApp and ClientApp in process
(:mod:`tests.golden_runs`), so the run is deterministic and the comparison is exact:
every accuracy, loss, participant list, byte count and model metric must equal the
recorded value (JSON equality of floats, i.e. bitwise). A refactoring that changes any
of them fails here; an intended change of behaviour re-records the files and says why.

The methods are the app's methods of the registry (:data:`not_flower.methods.METHOD_NAMES`;
a comparison variant runs as one of them): a method registered without a recorded file fails
here (it is not skipped), so every method the app can run is run end to end on this tiny
setting.
"""

from __future__ import annotations

import json

import pytest

from tests.golden_runs import GOLDEN_DIR, METHODS, run


@pytest.mark.e2e  # a whole fixed-seed run of the app per method (minutes on a busy machine)
@pytest.mark.parametrize("method", METHODS)
def test_fixed_seed_results_are_unchanged(method):
    path = GOLDEN_DIR / f"{method}.json"
    if not path.is_file():
        pytest.fail(f"method {method!r} is registered but has no fixed-seed results in {path}: "
                    f"record them with `python -m tests.golden_runs {method}` and commit the file")
    golden = json.loads(path.read_text())
    fresh = json.loads(json.dumps(run(method), sort_keys=True))
    assert fresh["rounds"] == golden["rounds"]
    assert fresh == golden
