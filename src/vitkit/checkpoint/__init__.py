"""Reading and writing weights: vitkit's own format and pure state_dict converters for foreign checkpoints."""
