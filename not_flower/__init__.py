"""not-flower: federated unlearning by weight negation (NoT) as a Flower app."""

__version__ = "0.1.0"
