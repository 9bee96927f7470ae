"""``python -m not_flower.audit verify ...``: see :mod:`not_flower.audit.cli`."""

from not_flower.audit.cli import main

raise SystemExit(main())
