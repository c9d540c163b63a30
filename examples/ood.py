"""Train affine, additive and residual flows on the 8x8 digits and measure their reconstruction error on noise."""

from __future__ import annotations

import argparse
import os

from lipflow.experiments import ood

#: tiny sizes used when LIPFLOW_SMOKE=1 and no arguments are given (the examples smoke test)
SMOKE = ["--depth", "1", "--hidden", "4", "--steps", "2", "--batch", "16", "--noise", "5", "--no-progress"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    ood.add_arguments(parser)
    if argv is None and os.environ.get("LIPFLOW_SMOKE") == "1":
        argv = SMOKE
    return ood.run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
