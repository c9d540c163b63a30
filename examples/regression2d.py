"""Regress a Glow-like flow onto a nearly singular 2D map, unregularised and with NF / FD regularisers."""

from __future__ import annotations

import argparse
import os

from lipflow.experiments import regression2d

#: tiny sizes used when LIPFLOW_SMOKE=1 and no arguments are given (the examples smoke test)
SMOKE = ["--flow-steps", "1", "--steps", "4", "--n-train", "16", "--monitor-every", "2", "--no-progress"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    regression2d.add_arguments(parser)
    if argv is None and os.environ.get("LIPFLOW_SMOKE") == "1":
        argv = SMOKE
    return regression2d.run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
