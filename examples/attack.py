"""Attack the invertibility of affine and residual digit flows inside the dequantisation box."""

from __future__ import annotations

import argparse
import os

from lipflow.experiments import attack

#: tiny sizes used when LIPFLOW_SMOKE=1 and no arguments are given (the examples smoke test)
SMOKE = ["--depth", "1", "--hidden", "4", "--steps", "2", "--batch", "16", "--images", "3", "--attack-steps", "2",
         "--no-progress"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    attack.add_arguments(parser)
    if argv is None and os.environ.get("LIPFLOW_SMOKE") == "1":
        argv = SMOKE
    return attack.run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
