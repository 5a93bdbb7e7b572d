"""How far flows of `moons4d` are from its true density on fresh draws.

    python benchmarks/moons4d_gap.py saved_models/moons4d [MORE_MODELS ...]

For each model: the mean NLL of 50,000 fresh `kerasflows.datasets.load("moons4d",
seed=123)` points, the mean of the exact `-true_log_prob` on the same points, and
the gap between them with its standard error (paired, point by point).
"""

import argparse
import sys

import numpy as np

import kerasflows
from kerasflows import datasets


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help=".keras files or model folders")
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=123)
    args = p.parse_args(argv)
    x = datasets.load("moons4d", n=args.n, seed=args.seed)
    true = -datasets.true_log_prob("moons4d", x)
    for path in args.models:
        nll = -kerasflows.load(path).log_prob(x).numpy().astype(np.float64)
        gap = nll - true
        print(f"{path}: NLL {nll.mean():.4f}, true entropy {true.mean():.4f}, gap "
              f"{gap.mean():+.4f} +- {gap.std() / np.sqrt(len(gap)):.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
