"""Pure state_dict -> state_dict converters with explicit key tables, one file per foreign format."""
