"""Train additive and affine INN classifiers on 8x8 digits (none / FD / NF) and compare memory-saving gradients."""

from __future__ import annotations

import argparse
import os

from lipflow.experiments import classifier

#: tiny sizes used when LIPFLOW_SMOKE=1 and no arguments are given (the examples smoke test)
SMOKE = ["--depth", "2", "--hidden", "8", "--steps", "4", "--batch", "16", "--probe-every", "2",
         "--spectrum-points", "5", "--no-progress"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    classifier.add_arguments(parser)
    if argv is None and os.environ.get("LIPFLOW_SMOKE") == "1":
        argv = SMOKE
    return classifier.run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
