"""Source, scripts and docs say the thing itself, never point outside the repository.

A comment such as "see issue 4" or "definitions in notes/not-paper.md" means nothing to a
reader of a clone: the issue tracker and the developers' notes are not part of it. This
test greps every tracked-looking text file (not data: JSON results keep the paths they
were measured at) for such pointers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {
    ".git",
    ".venv",
    "venv",
    "outputs",
    ".flwr-home",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    "node_modules",
    ".venv-nightly",
}
SUFFIXES = {".py", ".sh", ".toml", ".yaml", ".yml", ".md", ".cfg", ".ini", ".txt"}
# Built from parts so that this file does not match itself.
POINTERS = re.compile(
    "|".join(
        [
            r"\bissues?\s*#?\d+\b",  # "issue 4", "issue #6", "issues 3"
            r"\bnotes" + r"/[\w.-]+",  # the developers' notes folder
            r"\.\./" + r"shared\b",  # a folder beside the checkout
            r"(?<![\w.])/" + r"work/",  # this machine's paths
            r"fresh" + r"-ci\b",  # a tool that is not in the repository
        ]
    ),
    re.IGNORECASE,
)


def _text_files():
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in files:
            path = Path(folder) / name
            if path.suffix in SUFFIXES or name in ("Dockerfile", "run"):
                yield path


def find_pointers(text: str) -> list[str]:
    """Each line of ``text`` that points outside the repository, as ``LINE: text``."""
    return [
        f"{n}: {line.strip()}"
        for n, line in enumerate(text.splitlines(), 1)
        if POINTERS.search(line)
    ]


def test_the_pattern_catches_what_it_should_and_nothing_else():
    bad = [
        "# the baselines of issue 4",
        "(issue #12)",
        "see notes" + "/not-paper.md",
        "with `../" + "shared/tools/x`",
        "/" + "work/main/README.md",
        "fresh" + "-ci run",
    ]
    good = [
        "# the baselines PGD, FedEraser, FUKD",
        "footnotes/x",
        "an issuer of certificates",
        "network/work/queue",
        "tissue 4",
    ]
    assert [bool(find_pointers(t)) for t in bad] == [True] * len(bad)
    assert [bool(find_pointers(t)) for t in good] == [False] * len(good)


def test_no_file_points_outside_the_repository():
    found = {}
    for path in _text_files():
        if path == Path(__file__).resolve():
            continue
        hits = find_pointers(path.read_text(errors="replace"))
        if hits:
            found[str(path.relative_to(ROOT))] = hits[:5]
    assert not found, f"say the thing itself instead of pointing outside the repository: {found}"
    assert any(p.name == "config.py" for p in _text_files())  # the walk saw the sources
