"""Missing identities: the error says what the ClientApp really lacks, with both lines to add."""

from __future__ import annotations

import pytest

from strategies import NoT, UnlearningError
from strategies.identity import identity_hint
from tests.test_strategy import PLAN, make_grid, run

HANDLER = "`from strategies import answer_identity` and `app.query('identity')(answer_identity)`"


def test_hint_for_nodes_that_have_not_replied_yet_names_the_query_handler():
    text = identity_hint(replied=0, silent=5)
    assert text.startswith(
        "5 node(s) did not answer the identity query and have not replied "
        "yet: the identity mod (ClientApp(mods=[identity_mod])) only adds the "
        "identity to train/evaluate replies, so before a node's first reply "
        "(a request at round 1) only the query handler can tell."
    )
    assert f"Add to the ClientApp {HANDLER}, or apply" in text
    assert "``" not in identity_hint(replied=2, silent=3)  # each snippet quoted once
    assert "from strategies import identity_mod" not in text  # the mod is not the fix here
    assert text.endswith("or name targets by 'node-id' or 'supernode-name'")


def test_hint_for_nodes_that_replied_without_identity_offers_both_ways():
    text = identity_hint(replied=2, silent=0)
    assert text.startswith("2 node(s) replied without an identity")
    assert HANDLER in text
    assert "`from strategies import identity_mod` and `ClientApp(mods=[identity_mod])`" in text
    assert identity_hint(0, 0) == ""


def test_identity_mod_alone_with_a_request_at_round_1():
    grid = make_grid(with_mod=True)  # replies would carry the identity; no query handler
    strategy = NoT(PLAN, min_train_nodes=1)
    strategy.request_unlearning("1", at_round=1)
    with pytest.raises(UnlearningError) as err:
        run(strategy, grid, rounds=2)
    text = str(err.value)
    assert text.startswith(
        "unlearning target partition-id=1 matches no connected node; "
        "connected nodes have partition-id in (none). 5 node(s) did not "
        "answer the identity query and have not replied yet"
    )
    assert HANDLER in text and "replied without an identity" not in text
    assert not grid.sent_to(next(iter(grid.nodes)), "train")  # failed before any training


def test_plain_clientapp_after_round_1_is_told_both_ways():
    grid = make_grid()  # neither the mod nor the handler
    strategy = NoT(PLAN, min_train_nodes=1)
    strategy.request_unlearning("1", at_round=2)
    with pytest.raises(UnlearningError, match=r"5 node\(s\) replied without an identity"):
        run(strategy, grid, rounds=3)
