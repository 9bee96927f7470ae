"""Your own ServerApp with NoT around FedProx or FedAdam: train, forget client 1, recover."""

import torch
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAdam, FedProx

from examples.own_app.task import Net
from strategies import Negation, Unlearning, plan_negation

app = ServerApp()
RUNS = []  # (strategy, result) of each run, kept for inspection


def run(grid: Grid, base: str = "fedprox"):
    """Train 3 rounds with ``base`` (FedProx or FedAdam), forget client 1, recover 3."""
    torch.manual_seed(0)
    model = Net()
    plan = plan_negation(model, torch.zeros(1, 1, 8, 8), "first")  # negate `conv`
    wrapped = {
        "fedprox": FedProx(proximal_mu=0.01, min_train_nodes=2, min_evaluate_nodes=2),
        "fedadam": FedAdam(eta=0.01, min_train_nodes=2, min_evaluate_nodes=2),
    }[base]
    # The wrapped strategy samples and aggregates as always; the wrapper negates at the
    # request and keeps the target out of every later round.
    strategy = Unlearning(wrapped, Negation(plan))
    strategy.request_unlearning("1", by="partition-id", at_round=4)
    result = strategy.start(grid, ArrayRecord(model.state_dict()), num_rounds=6)
    RUNS.append((strategy, result))
    return strategy, result


@app.main()
def main(grid: Grid, context: Context) -> None:
    run(grid, str(context.run_config.get("base", "fedprox")))
