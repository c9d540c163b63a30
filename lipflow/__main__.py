"""``python -m lipflow``."""

from lipflow.cli.main import entry

entry()
