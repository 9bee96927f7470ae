"""Sample: NoT around FedProx or FedAdam in a ServerApp of your own (the Unlearning wrapper)."""
