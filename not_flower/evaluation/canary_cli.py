"""Command line of the canary check: ``python -m not_flower.evaluation.canary_cli check``.

A departing client runs it on a global model (a checkpoint) with its own canaries
(regenerated from its secret seed, :mod:`not_flower.task.canary`)::

    python -m not_flower.evaluation.canary_cli check --checkpoint CKPT --seed SECRET [--count 16]
    python -m not_flower.evaluation.canary_cli check --checkpoint CKPT --canary-seed 0 --client 1

The second form is for a simulated client (run config ``canary.clients``): its seed is
derived from the run config's ``canary.seed`` and its partition id. The model is rebuilt
from the checkpoint's metadata (model, input shape, number of classes). One line is
printed; ``--json`` also writes the result.

Exit status: 0 the model does not carry the canaries (p-value >= alpha), 1 it still does
(p-value < alpha), 2 bad input (before any work).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from not_flower.task.canary import (
    ALPHA,
    DEFAULT_PERMUTATIONS,
    check_model,
    client_canary_seed,
    make_canaries,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m not_flower.evaluation.canary_cli",
        description="Test whether a model still carries a client's canaries.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser(
        "check",
        help="score the client's in- and out-canaries under a checkpoint; one-sided "
        "permutation p-value that the in-canaries fit better",
    )
    check.add_argument("--checkpoint", required=True, help="a not-flower checkpoint (.pt)")
    seed = check.add_mutually_exclusive_group(required=True)
    seed.add_argument("--seed", type=int, help="the client's own secret canary seed")
    seed.add_argument(
        "--canary-seed",
        type=int,
        help="a simulated client: the run config's canary.seed (with --client)",
    )
    check.add_argument("--client", type=int, help="with --canary-seed: the partition id")
    check.add_argument(
        "--count", type=int, default=16, help="in-canaries (= out-canaries); default 16"
    )
    check.add_argument(
        "--alpha", type=float, default=ALPHA, help=f"significance level; default {ALPHA}"
    )
    check.add_argument(
        "--permutations",
        type=int,
        default=DEFAULT_PERMUTATIONS,
        help=f"random permutations of the test; default {DEFAULT_PERMUTATIONS}",
    )
    check.add_argument("--json", metavar="PATH", help="also write the result here")
    return parser


def _seed(args: argparse.Namespace) -> int:
    """The client's canary seed from ``--seed`` or ``--canary-seed`` and ``--client``."""
    if args.seed is not None:
        if args.client is not None:
            raise ValueError("--client goes with --canary-seed, not with --seed")
        if args.seed < 0:
            raise ValueError(f"--seed must be an integer >= 0, got {args.seed}")
        return args.seed
    if args.client is None or args.client < 0:
        raise ValueError(
            f"--canary-seed needs --client, the partition id (an integer >= 0); got {args.client!r}"
        )
    if args.canary_seed < 0:
        raise ValueError(f"--canary-seed must be an integer >= 0, got {args.canary_seed}")
    return client_canary_seed(args.canary_seed, args.client)


def _check_args(args: argparse.Namespace) -> int:
    """Refuse bad values before any work; return the canary seed."""
    seed = _seed(args)
    if args.count < 1:
        raise ValueError(f"--count must be an integer >= 1, got {args.count}")
    if not 0 < args.alpha < 1:
        raise ValueError(f"--alpha must be in (0, 1), got {args.alpha}")
    if args.permutations < 1:
        raise ValueError(f"--permutations must be an integer >= 1, got {args.permutations}")
    if not Path(args.checkpoint).is_file():
        raise ValueError(f"--checkpoint {args.checkpoint!r} does not exist or is not a file")
    return seed


def run_check(args: argparse.Namespace) -> dict:
    """Load the checkpoint, regenerate the canaries and test them.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``check`` arguments.

    Returns
    -------
    dict
        :func:`not_flower.task.canary.canary_test`'s result with ``checkpoint``,
        ``model_sha256``, ``model`` and ``canaries`` (the spec, without the seed).

    Raises
    ------
    ValueError
        On bad arguments or a checkpoint that cannot be read or rebuilt.
    """
    # pylint: disable=import-outside-toplevel
    from not_flower.audit.record import sha256_arrays
    from not_flower.common.store import load_checkpoint
    from not_flower.task.models import build_model

    seed = _check_args(args)
    state, meta = load_checkpoint(args.checkpoint)
    missing = [k for k in ("model", "input_shape", "num_classes") if k not in meta]
    if missing:
        raise ValueError(
            f"checkpoint {args.checkpoint!r} has no {', '.join(missing)} in its metadata; "
            "it was not written by not-flower's ServerApp"
        )
    shape = tuple(int(s) for s in meta["input_shape"])
    model = build_model(meta["model"], shape, int(meta["num_classes"]))
    model.load_state_dict(state)
    canaries = make_canaries(seed, shape, int(meta["num_classes"]), args.count)
    result = check_model(model, canaries, alpha=args.alpha, permutations=args.permutations)
    spec = {k: v for k, v in canaries.spec().items() if k != "seed"}  # the seed stays secret
    return {
        **result,
        "checkpoint": str(args.checkpoint),
        "model_sha256": sha256_arrays(state),
        "model": meta["model"],
        "dataset": meta.get("dataset"),
        "canaries": spec,
    }


def verdict_line(result: dict) -> str:
    """One human line for a result of :func:`run_check`."""
    sizes = f"AUC {result['auc']:.3f}, {result['n_in']} in / {result['n_out']} out"
    if result["detected"]:
        return (
            f"DETECTED: the model still carries the canaries (p = {result['p_value']:.4g} "
            f"< alpha {result['alpha']}; {sizes})"
        )
    return (
        f"not detected: no evidence the model carries the canaries (p = "
        f"{result['p_value']:.4g} >= alpha {result['alpha']}; {sizes})"
    )


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring. Returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        result = run_check(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(verdict_line(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 1 if result["detected"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
