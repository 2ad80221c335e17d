"""Training: one engine (`engine`), its configuration (`config`), the task step functions (`tasks`), the launcher
from the command line (`launch`) and dataset-wide evaluation (`evaluate`)."""
