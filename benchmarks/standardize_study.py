"""What `standardize=True` does for data far from a unit scale.

Fits the same 4-layer NSF to moons (10,000 points, seed 0) as it is, moved to
`x * 30 + 100` and shrunk to `x * 0.01`, with and without the data-end
ActNorm (`kerasflows.models.NSF(..., standardize=True)`), 15 epochs of batches
of 512 with Adam 1e-3, and prints each fit's final validation NLL in moons'
own units (the NLL minus 2 log|scale|, so all rows are comparable).

    .venv/bin/python benchmarks/standardize_study.py --out benchmarks/results/<name>.json
"""

import argparse
import json
import time

import keras
import numpy as np

import kerasflows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args()
    x0 = kerasflows.datasets.load("moons", n=10_000, seed=0)
    rows = []
    for scale, shift in [(1.0, 0.0), (30.0, 100.0), (0.01, 0.0)]:
        for standardize in (False, True):
            keras.utils.set_random_seed(0)
            flow = kerasflows.models.NSF(2, num_layers=4, standardize=standardize)
            flow.compile(optimizer=keras.optimizers.Adam(1e-3))
            start = time.perf_counter()
            history = flow.fit(x0 * scale + shift, batch_size=512, epochs=args.epochs,
                               verbose=0, validation_split=0.1)
            nll = history.history["val_loss"][-1] - 2 * np.log(scale)
            rows.append({"scale": scale, "shift": shift, "standardize": standardize,
                         "val_nll_moons_units": round(float(nll), 4),
                         "seconds": round(time.perf_counter() - start, 1)})
            print(rows[-1], flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"epochs": args.epochs, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
