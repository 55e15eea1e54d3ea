"""`python -m emulators.orgdata --size demo --seed 1 --org brightwave`: generate an org, print its summary."""

from __future__ import annotations

import argparse
import sys

from . import DEFAULT_SHAPE, ORG_SHAPES, SIZES, generate, org_summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.orgdata", description=__doc__)
    parser.add_argument("--size", choices=SIZES, default="demo", help="org size (default: demo)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    parser.add_argument(
        "--org", choices=ORG_SHAPES, default=DEFAULT_SHAPE, help=f"org shape (default: {DEFAULT_SHAPE})"
    )
    args = parser.parse_args(argv)
    print(org_summary(generate(args.size, args.seed, org=args.org)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
