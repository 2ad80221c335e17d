"""Using a model on inputs, no dataset needed: classifiers (`classify`), ViLT's heads (`vilt`), word-patch
alignment pictures (`align`) and judging DiT samples (`dit`). Dataset-wide evaluation is `vitkit.train.evaluate`."""
