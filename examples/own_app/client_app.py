"""A Flower-quickstart-style ClientApp that knows nothing of not-flower...

...except for ONE added line (marked below), needed only because the server names the
client to forget by its ``partition-id``. Targets named by ``node-id`` or
``supernode-name`` need no change at all.
"""

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from sklearn.datasets import load_digits

from strategies import answer_identity

from .task import Net

app = ClientApp()
app.query("identity")(answer_identity)  # <- the one added line


def load_partition(partition_id: int, num_partitions: int):
    x, y = load_digits(return_X_y=True)
    idx = np.arange(len(y))[partition_id::num_partitions]
    return torch.tensor(x[idx] / 16.0, dtype=torch.float32).view(-1, 1, 8, 8), torch.tensor(y[idx])


@app.train()
def train(msg: Message, context: Context) -> Message:
    model = Net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y = load_partition(
        context.node_config["partition-id"], context.node_config["num-partitions"]
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(2):
        for i in range(0, len(x), 16):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[i : i + 16]), y[i : i + 16])
            loss.backward()
            opt.step()
    content = RecordDict(
        {
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": MetricRecord({"train-loss": loss.item(), "num-examples": len(x)}),
        }
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    model = Net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y = load_partition(
        context.node_config["partition-id"], context.node_config["num-partitions"]
    )
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    return Message(
        RecordDict({"metrics": MetricRecord({"acc": acc, "num-examples": len(x)})}), reply_to=msg
    )
