"""NSF's spline couplings on moons4d with the "halves" and "checkerboard" masks.

    python benchmarks/mask_ab.py [--seeds 0]

Each mask: `kerasflows.models.NSF(4, num_layers=6, hidden_units=(64, 64),
mask=...)`, Adam 2e-3, 20 epochs of batch 512 on 60,000 draws (seed 0); the gap
of its mean NLL on 20,000 fresh draws (seed 9) to their true entropy.
"""

import argparse
import sys
import time

import keras

from kerasflows import datasets, models


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=20)
    args = p.parse_args(argv)
    x = datasets.load("moons4d", n=60_000, seed=0)
    test = datasets.load("moons4d", n=20_000, seed=9)
    true = -datasets.true_log_prob("moons4d", test).mean()
    for seed in args.seeds:
        for mask in ("halves", "checkerboard"):
            keras.utils.set_random_seed(seed)
            flow = models.NSF(4, num_layers=6, hidden_units=(64, 64), mask=mask)
            flow.compile(optimizer=keras.optimizers.Adam(2e-3))
            start = time.time()
            flow.fit(x, batch_size=512, epochs=args.epochs, verbose=0)
            gap = -flow.log_prob(test).numpy().mean() - true
            print(f"seed {seed} {mask:12s} gap {gap:+.4f} ({time.time() - start:.0f} s)",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
