"""A Gaussian base against a Student-t base on heavy-tailed data, side by side.

    python benchmarks/heavy_tails.py [--seeds 0 1 2] [--out FILE.json]

Each run: `kerasflows.models.NSF(2, num_layers=4, hidden_units=(64, 64),
base=...)` (8 bins on [-5, 5], identity tails), with and without
`standardize=True`, Adam 2e-3, 40 epochs of batch 512 on 40,000 draws of
`heavy_tails` (seed 0); the gap of its mean NLL on 20,000 fresh draws (seed 9)
to their true log-density, the same over the fresh draws beyond |x1| = 10 (the
tails), and the degrees of freedom learned. `moons` (light tails; 1 seed,
without standardize) checks what the Student-t base costs where there are no
heavy tails.
"""

import argparse
import json
import sys
import time

import keras
import numpy as np

from kerasflows import datasets, models


def run(name, base, standardize, seed, epochs):
    x = datasets.load(name, n=40_000, seed=0)
    test = datasets.load(name, n=20_000, seed=9)
    true = datasets.true_log_prob(name, test)
    keras.utils.set_random_seed(seed)
    flow = models.NSF(2, num_layers=4, hidden_units=(64, 64), base=base,
                      standardize=standardize)
    flow.compile(optimizer=keras.optimizers.Adam(2e-3))
    start = time.time()
    flow.fit(x, batch_size=512, epochs=epochs, verbose=0)
    seconds = time.time() - start
    lp = flow.log_prob(test).numpy().astype(np.float64)
    far = np.abs(test[:, 0]) > 10
    return {"dataset": name, "base": base, "standardize": standardize, "seed": seed,
            "gap": float(true.mean() - lp.mean()),
            "tail_rows": int(far.sum()),
            "tail_gap": float(true[far].mean() - lp[far].mean()) if far.any() else None,
            "worst_row_gap": float((true - lp).max()),
            "df": None if flow.base_df is None else [float(v) for v in flow.base_df],
            "seconds": round(seconds, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--out", help="write the runs to this JSON file")
    args = p.parse_args(argv)
    jobs = [("heavy_tails", base, standardize, seed) for seed in args.seeds
            for standardize in (False, True) for base in ("normal", "student_t")]
    jobs += [("moons", base, False, args.seeds[0]) for base in ("normal", "student_t")]
    runs = []
    for job in jobs:
        r = run(*job, args.epochs)
        runs.append(r)
        tail = "" if r["tail_gap"] is None else \
            f" tails ({r['tail_rows']} rows) {r['tail_gap']:+9.3f}"
        df = "" if r["df"] is None else " df " + ", ".join(f"{v:.2f}" for v in r["df"])
        print(f"{r['dataset']:11s} {r['base']:9s} standardize={str(r['standardize']):5s} "
              f"seed {r['seed']} gap {r['gap']:+8.3f}{tail} worst row {r['worst_row_gap']:+.1f}"
              f"{df} ({r['seconds']:.0f} s)", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"script": "benchmarks/heavy_tails.py", "argv": sys.argv[1:],
                       "runs": runs}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
