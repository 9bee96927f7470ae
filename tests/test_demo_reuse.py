"""The demo scripts reuse their fixed out-dirs: a second run moves the first aside.

The app refuses an out-dir holding another run's files unless ``resume`` or ``overwrite``
is set (``not_flower/common/outdir.py``); the quickstart (``outputs/demo``) and the deployment
scripts (``outputs/deploy-*``) pass ``overwrite=true`` unless the user's overrides already
say ``resume`` or ``overwrite``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.e2e  # runs bash


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ("", "overwrite=true"),
        ("unlearn.clients='3'", "overwrite=true"),
        ("resume=true", ""),
        ("overwrite=false", ""),
    ],
)
def test_deploy_scripts_reuse_key(overrides, expected):
    out = subprocess.run(
        ["bash", "-c", 'source examples/deploy/lib.sh; nf_reuse_key "$1"', "_", overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == expected


def test_every_demo_script_passes_the_reuse_key():
    for name in ("local.sh", "netns.sh", "tls_auth.sh"):
        text = (ROOT / "examples" / "deploy" / name).read_text()
        assert "out-dir='$OUT' $(nf_reuse_key \"$EXTRA\")" in text, name
    quick = (ROOT / "examples" / "quickstart.sh").read_text()
    assert 'REUSE="overwrite=true"' in quick and "out-dir='$OUT' $REUSE" in quick
