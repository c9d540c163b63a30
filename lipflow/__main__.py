"""``python -m lipflow``."""

import sys

from lipflow.cli.main import main

sys.exit(main())
