"""Train affine, modified affine and residual flows on the 2D checkerboard and map their reconstruction error."""

from __future__ import annotations

import argparse
import os

from lipflow.experiments import checkerboard

#: tiny sizes used when LIPFLOW_SMOKE=1 and no arguments are given (the examples smoke test)
SMOKE = ["--depth", "2", "--hidden", "8", "--steps", "3", "--batch", "32", "--grid-step", "1.0", "--no-progress"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    checkerboard.add_arguments(parser)
    if argv is None and os.environ.get("LIPFLOW_SMOKE") == "1":
        argv = SMOKE
    return checkerboard.run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
