"""Your own ServerApp with the NoT strategy: train, forget client 1, recover."""

import torch
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from strategies import NoT, plan_negation

from .task import Net

app = ServerApp()
RUNS = []  # (strategy, result) of each run, kept for inspection


@app.main()
def main(grid: Grid, context: Context) -> None:
    torch.manual_seed(0)
    model = Net()
    # Which tensors to negate: the first layer in forward order (found by running the
    # model on an example input: here `conv`, although `head` is defined first).
    plan = plan_negation(model, torch.zeros(1, 1, 8, 8), "first")
    strategy = NoT(plan, min_train_nodes=2, min_evaluate_nodes=2)
    # Forget the client with partition-id 1 at the boundary before round 4.
    strategy.request_unlearning("1", by="partition-id", at_round=4)
    result = strategy.start(grid, ArrayRecord(model.state_dict()), num_rounds=6)
    RUNS.append((strategy, result))
