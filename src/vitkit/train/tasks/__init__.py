"""The training tasks the one engine runs: each a small class with train_step / evaluate, plus a `setup` that
reads its data and builds the model."""
