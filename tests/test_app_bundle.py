"""The app bundle (FAB) `flwr run` ships holds the app: its two packages and pyproject.toml.

Built with Flower's own builder (`flwr build` calls the same function) from this checkout.
Before `fab-include` the bundle packed docs, tests, benchmarks, results and the README:
2.46 MB in 154 files (flwr 1.42.0, measured on the working tree of 2026-12-07); with it,
0.72 MB in 71 files; with the experiments and the launcher left out (``fab-exclude``, the
packages of ``not_flower`` by concern), 779,951 bytes in 86 files (767,863 in 84 before
the pinned digits split and the collapse warning, 721,695 in 76 before the settings
declarations and the specs).
"""

from __future__ import annotations

import functools
import io
import tomllib
import zipfile
from pathlib import Path

from flwr.cli.build import build_fab_from_disk

ROOT = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def _bundle() -> tuple[bytes, list[str]]:  # one build (~10 s) for both tests
    fab = build_fab_from_disk(ROOT)
    names = zipfile.ZipFile(io.BytesIO(fab)).namelist()
    return fab, names


def test_bundle_holds_the_app_and_nothing_else():
    fab, names = _bundle()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"pyproject.toml", ".info", "not_flower", "strategies"}, tops
    assert all(n.endswith(".py") for n in names if n.split("/")[0] in ("not_flower", "strategies"))
    # every module of both packages is in it, so the ServerApp and ClientApp import;
    # not the experiments or the launcher, which the app never imports
    left_out = ("not_flower/experiments/", "not_flower/launch/")
    assert not [n for n in names if n.startswith(left_out)]
    for package in ("not_flower", "strategies"):
        on_disk = {
            p.relative_to(ROOT).as_posix()
            for p in (ROOT / package).rglob("*.py")
            if "__pycache__" not in p.parts
        }
        on_disk = {n for n in on_disk if not n.startswith(left_out)}
        assert on_disk <= set(names), sorted(on_disk - set(names))
    components = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"][
        "components"
    ]
    for ref in components.values():
        assert ref.split(":")[0].replace(".", "/") + ".py" in names
    assert len(fab) < 1_500_000, f"the bundle is {len(fab):,} bytes"


def test_no_docs_tests_benchmarks_or_results_in_the_bundle():
    _, names = _bundle()
    for name in names:
        assert not name.startswith(
            ("docs/", "tests/", "benchmarks/", "examples/", "docker/", "outputs/", "scripts/")
        ), name
        assert not name.endswith((".md", ".png", ".json", ".jsonl", ".pt")), name
