"""Side by side, in one process: the training step whole and split into shards.

    python benchmarks/shards_ab.py [--families maf,realnvp,nsf_coupling,nsf]
                                   [--dims 2,64] [--shards 1,2] [--rounds 9]
                                   [--json out.json]

For each family and dimension, builds the benchmark protocol's flow once
per `shards` value (5 layers, hidden [64, 64], 8 bins on [-5, 5] for the
splines, seed 0, 2 threads) and its step as the peer benchmark's plugin
does (`make_train_step(..., background_compile=True, shards=...)`), then
times the steps, the variants alternating round by round: each round draws
50 batches of 512 rows (seeded; the same batches for every variant) and
keeps the median step of each variant. Before the rounds it records the
first step (tracing included) and waits for the background compilation.

All variants start from the same weights and get the same batches; the
script prints the largest difference between their losses (the parts'
gradients are summed in another order, so they agree to float rounding,
and training compounds it). Data: the benchmark's digits for 64
dimensions (1,300 rows, tiled), standard normal rows otherwise
(`side_by_side.rows`). Prints the medians over rounds.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerasflows import models, training  # noqa: E402
from side_by_side import median_step_ms, rows, write_json  # noqa: E402

RECIPES = {"maf": (models.MAF, {}), "realnvp": (models.RealNVP, {}),
           "nsf_coupling": (models.NSF, {"bins": 8, "bound": 5.0}),
           "nsf": (models.NSF, {"bins": 8, "bound": 5.0, "autoregressive": True})}


def build(family, dim, shards, x):
    """The flow and its step; returns them with the first step's time."""
    keras.utils.set_random_seed(0)
    recipe, kwargs = RECIPES[family]
    flow = recipe(dim, num_layers=5, hidden_units=(64, 64), **kwargs)
    t = time.perf_counter()
    step = training.make_train_step(flow, keras.optimizers.Adam(1e-3), background_compile=True,
                                    shards=shards)
    float(step(x[:512]))
    first = time.perf_counter() - t
    if not step.wait(120):
        raise SystemExit(f"{family} {dim}-D shards={shards}: background compilation failed: "
                         f"{step.error!r}")
    return flow, step, first


def measure(family, dim, variants, rounds, steps=50, batch=512):
    x = rows(dim, 65_536)
    built = {s: build(family, dim, s, x) for s in variants}
    rng = np.random.default_rng(0)
    times = {s: [] for s in variants}
    losses = {s: [] for s in variants}
    for _ in range(rounds):
        batches = [x[rng.integers(0, len(x), batch)] for _ in range(steps)]
        for s, (_, step, _) in built.items():
            times[s].append(median_step_ms(step, batches, losses[s]))
    first = {s: built[s][2] for s in variants}
    base = variants[0]
    differences = {s: float(np.max(np.abs(np.subtract(losses[base], losses[s]))))
                   for s in variants[1:]}
    return times, first, differences


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="maf,realnvp,nsf_coupling,nsf",
                    help="comma-separated: " + ", ".join(RECIPES))
    ap.add_argument("--dims", default="2,64", help="comma-separated event sizes")
    ap.add_argument("--shards", default="1,2", help="comma-separated shard counts; the "
                    "first is the reference of the loss differences")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--json", help="write every timing here")
    args = ap.parse_args()
    families = args.families.split(",")
    unknown = [f for f in families if f not in RECIPES]
    if unknown:
        ap.error(f"unknown families {unknown}; expected some of {list(RECIPES)}")
    variants = [int(s) for s in args.shards.split(",")]
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    results = []
    print("family dim shards: median train step ms (over rounds) | first step s", flush=True)
    for family in families:
        for dim in (int(d) for d in args.dims.split(",")):
            times, first, differences = measure(family, dim, variants, args.rounds)
            for s in variants:
                print(f"{family} {dim} {s}: {statistics.median(times[s]):6.3f} ms | "
                      f"{first[s]:5.2f} s", flush=True)
            print(f"{family} {dim}: largest loss difference from shards={variants[0]}: "
                  f"{differences}", flush=True)
            results.append(dict(family=family, dim=dim, train_ms=times, first_step_s=first,
                                loss_differences=differences))
    if args.json:
        write_json(args.json, "benchmarks/shards_ab.py", started, results)


if __name__ == "__main__":
    main()
