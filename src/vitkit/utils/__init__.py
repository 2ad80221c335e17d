"""Helpers every layer may use: random numbers (`random`), devices (`device`), process groups (`distributed`),
pictures (`viz`)."""
