"""Side by side, in one process: the conditioners' products as they were, and
with the narrow output layers' written-out gradient (`nets.narrow_matmul`)
and MADE's disconnected inputs and outputs left out (`made.PRUNE_MADE`).

    python benchmarks/narrow_ab.py [--family realnvp] [--dims 2,4] [--units N]
                                   [--shards 2] [--rounds 15] [--json out.json]

For each dimension, builds the benchmark protocol's flow of `--family`
(`realnvp`, `maf` or `nsf`, the autoregressive spline with 8 bins on [-5, 5];
5 layers, hidden [64, 64], seed 0, 2 threads) twice: "dense" with
`nets.NARROW_OUTPUT_UNITS = 0` and `made.PRUNE_MADE = False` (every output
layer a plain product of the whole masked kernel, as before), "narrow" with
`--units` (default: the library's setting; a RealNVP on D dimensions has
D // 2 * 2 outputs, a pruned MADE (D - 1) * params) and pruning on. Each
step is made as the peer benchmark's plugin makes it
(`make_train_step(..., background_compile=True, shards=...)`) and traced
while its setting is in force. Then it times the steps round by round, the
variants alternating and taking turns at going first: each round draws 50
batches of 512 rows (seeded; the same batches for both) and keeps each
variant's median step. Both start from the same weights and see the same
batches; the script prints the largest loss difference (float rounding of
the other summation order, compounded by training). It also times
`log_prob` of 65,536 rows and `sample(100_000)` (`eval_mode="xla"`, median
of 5 calls after one warm-up call), whose
products are the same in both. Data: standard normal rows
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
from kerasflows.layers import made, nets  # noqa: E402
from side_by_side import median_step_ms, rows, write_json  # noqa: E402

VARIANTS = {"dense": 0, "narrow": nets.NARROW_OUTPUT_UNITS}   # --units sets "narrow"
FAMILIES = {"realnvp": (models.RealNVP, {}), "maf": (models.MAF, {}),
            "nsf": (models.NSF, {"bins": 8, "bound": 5.0, "autoregressive": True})}


def build(family, dim, units, shards, x):
    """The flow and its step, built and traced with NARROW_OUTPUT_UNITS = units
    (and MADE's pruning on when units > 0)."""
    kept = nets.NARROW_OUTPUT_UNITS, made.PRUNE_MADE
    nets.NARROW_OUTPUT_UNITS, made.PRUNE_MADE = units, units > 0
    try:
        keras.utils.set_random_seed(0)
        recipe, kwargs = FAMILIES[family]
        flow = recipe(dim, num_layers=5, hidden_units=(64, 64), **kwargs)
        flow.eval_mode = "xla"
        step = training.make_train_step(flow, keras.optimizers.Adam(1e-3),
                                        background_compile=True, shards=shards)
        float(step(x[:512]))
        if not step.wait(120):
            raise SystemExit(f"{dim}-D: background compilation failed: {step.error!r}")
        flow.log_prob(x)
        flow.sample(1000, seed=0)
        flow.sample(100_000, seed=0)
    finally:
        nets.NARROW_OUTPUT_UNITS, made.PRUNE_MADE = kept
    return flow, step


def timed(call, repeats=5):
    took = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        took.append(time.perf_counter() - t)
    return statistics.median(took) * 1e3


def measure(family, dim, shards, rounds, steps=50, batch=512):
    x = rows(dim, 65_536)
    built = {v: build(family, dim, u, shards, x) for v, u in VARIANTS.items()}
    rng = np.random.default_rng(0)
    names = list(VARIANTS)
    times = {v: [] for v in names}
    losses = {v: [] for v in names}
    for r in range(rounds):
        batches = [x[rng.integers(0, len(x), batch)] for _ in range(steps)]
        for v in (names if r % 2 == 0 else names[::-1]):
            times[v].append(median_step_ms(built[v][1], batches, losses[v]))
    evaluation = {v: {"log_prob_65536_ms": timed(lambda: built[v][0].log_prob(x).numpy()),
                      "sample_100000_ms": timed(lambda: built[v][0].sample(100_000).numpy())}
                  for v in names}
    difference = float(np.max(np.abs(np.subtract(losses[names[0]], losses[names[1]]))))
    return times, evaluation, difference


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", default="realnvp", choices=list(FAMILIES))
    ap.add_argument("--dims", default="2,4", help="comma-separated event sizes")
    ap.add_argument("--units", type=int, default=nets.NARROW_OUTPUT_UNITS,
                    help="NARROW_OUTPUT_UNITS of the narrow variant (> 0)")
    ap.add_argument("--shards", type=int, default=2, help="as make_train_step's shards")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--json", help="write every timing here")
    args = ap.parse_args()
    if args.units < 1:
        ap.error(f"--units must be at least 1; received {args.units}")
    VARIANTS["narrow"] = args.units
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    results = []
    print(f"{args.family}: dim variant: median train step ms (over rounds) | log_prob 65,536 ms | "
          "sample 10^5 ms", flush=True)
    for dim in (int(d) for d in args.dims.split(",")):
        times, evaluation, difference = measure(args.family, dim, args.shards, args.rounds)
        for v in VARIANTS:
            print(f"{dim} {v}: {statistics.median(times[v]):6.3f} ms | "
                  f"{evaluation[v]['log_prob_65536_ms']:6.1f} | "
                  f"{evaluation[v]['sample_100000_ms']:6.1f}", flush=True)
        faster = sum(n < d for n, d in zip(times["narrow"], times["dense"]))
        print(f"{dim}: narrow faster in {faster} of {args.rounds} rounds; largest loss "
              f"difference {difference:.2e}", flush=True)
        results.append(dict(family=args.family, dim=dim, shards=args.shards,
                            narrow_units=args.units, train_ms=times, evaluation_ms=evaluation,
                            loss_difference=difference))
    if args.json:
        write_json(args.json, "benchmarks/narrow_ab.py", started, results)


if __name__ == "__main__":
    main()
