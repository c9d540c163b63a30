"""Sample small Glows with sigmoid, biased sigmoid, bounded and additive couplings near z = 0 (Daniels)."""

from __future__ import annotations

import argparse
import os

from lipflow.experiments import remedies

#: tiny sizes used when LIPFLOW_SMOKE=1 and no arguments are given (the examples smoke test)
SMOKE = ["--depth", "1", "--steps", "2", "--samples", "4", "--no-progress"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    remedies.add_arguments(parser)
    if argv is None and os.environ.get("LIPFLOW_SMOKE") == "1":
        argv = SMOKE
    return remedies.run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
