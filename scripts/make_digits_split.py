"""Write not_flower/task/digits_split.py: the digits train/test split, pinned.

The split is scikit-learn's ``train_test_split(test_size=0.2, stratify=y, random_state=0)``
of ``load_digits()``. Pinning its order lets a ClientApp load digits without importing
scikit-learn (about a second of every ClientApp process's start in a deployment, where
Flower starts one process per message). ``tests/test_data.py`` recomputes it with
scikit-learn and compares; run this script when that test says the split moved::

    .venv/bin/python scripts/make_digits_split.py
"""

from __future__ import annotations

import base64
import sys
import textwrap
from pathlib import Path

import numpy as np

TARGET = Path(__file__).resolve().parents[1] / "not_flower" / "task" / "digits_split.py"


def split_order() -> tuple[np.ndarray, int]:
    """Train indices, then test indices, in the order ``train_test_split`` returns them;
    and the number of test indices."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    y = load_digits().target
    train, test = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=0)
    return np.concatenate([train, test]).astype("<u2"), len(test)


def render(order: np.ndarray, n_test: int) -> str:
    """The module's text for ``order`` (train then test indices) with ``n_test`` test rows."""
    text = base64.b64encode(order.astype("<u2").tobytes()).decode()
    lines = "\n".join(f'    "{chunk}"' for chunk in textwrap.wrap(text, 80))
    return (
        '"""The digits train/test split, pinned (written by scripts/make_digits_split.py).\n\n'
        "scikit-learn's ``train_test_split(test_size=0.2, stratify=y, random_state=0)`` of\n"
        "``load_digits()``: ``ORDER`` holds the train indices, then the test indices, as\n"
        "little-endian uint16, base64. ``tests/test_data.py`` recomputes it with scikit-learn.\n"
        '"""\n\n'
        f"N_TEST = {n_test}\n"
        f"ORDER = (\n{lines}\n)\n"
    )


def main() -> int:
    order, n_test = split_order()
    TARGET.write_text(render(order, n_test=n_test))
    print(f"wrote {TARGET} ({len(order)} indices)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
