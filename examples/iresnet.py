"""Reconstruction error of residual flows against the spectral coefficient and the fixed-point iterations."""

from __future__ import annotations

import argparse
import os

from lipflow.experiments import iresnet

#: tiny sizes used when LIPFLOW_SMOKE=1 and no arguments are given (the examples smoke test)
SMOKE = ["--depth", "2", "--points", "8", "--max-iterations", "5", "--no-progress"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    iresnet.add_arguments(parser)
    if argv is None and os.environ.get("LIPFLOW_SMOKE") == "1":
        argv = SMOKE
    return iresnet.run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
