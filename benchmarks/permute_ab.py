"""Side by side, in one process: `Permute` as a gather and as slices (`_pieces`).

    python benchmarks/permute_ab.py [--families realnvp,nice] [--dims 8,64]
                                    [--rounds 8] [--json out.json]

For each family and dimension, builds the benchmark protocol's flow twice
(5 layers, hidden [64, 64], the recipe's default checkerboard mask, seed 0):
once with every non-reversing `Permute` forced to gather (the checkerboard
`Permute` at the data end is the only one in these recipes), once as
shipped (its two orders sliced). The reversals between the layers are the
same in both. Then, the two alternating, times:

- the training step (`make_train_step`, XLA, batches of 512): `--rounds`
  rounds of 15 steps each, the median step of each round;
- `log_prob` of 65,536 rows (the harness's density call; in blocks of
  8,192) and `sample(10_000)`, `eval_mode="xla"` (`side_by_side.time_rounds`).

Both flows start from the same weights and get the same batches; the
script prints the largest differences between their losses, and between
their log-densities and samples after the last round. The reordering moves
values and does not round, but XLA may fuse, and so round, the operations
around it differently, and training compounds such differences (RealNVP:
none; NICE: up to 0.01 nats in log-density after the 120 steps of 8
rounds). Data: the benchmark's digits for 64 dimensions (1,300 rows,
tiled), standard normal rows otherwise (`side_by_side`). Prints the
medians over rounds.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerasflows import models, training  # noqa: E402
from kerasflows.layers import Permute  # noqa: E402
from side_by_side import print_medians, rows, time_rounds, write_json  # noqa: E402

RECIPES = {"realnvp": models.RealNVP, "nice": models.NICE}
VARIANTS = ("gather", "sliced")
ROWS = 65_536


def build(family, dim, variant, x):
    """The flow and its step, traced (and compiled) for `variant`."""
    keras.utils.set_random_seed(0)
    flow = RECIPES[family](dim, num_layers=5, hidden_units=(64, 64))
    flow.eval_mode = "xla"
    flow.log_prob(x[:2])                                   # builds the layers
    sliced = [layer for layer in flow.flow_layers
              if isinstance(layer, Permute) and layer._slicing not in (None, (None, None))]
    if not sliced:
        raise SystemExit(f"{family} at {dim} dimensions has no sliced Permute: nothing to compare")
    if variant == "gather":
        for layer in sliced:
            layer._slicing = (None, None)
    flow._compiled.clear()
    step = training.make_train_step(flow, keras.optimizers.Adam(1e-3))
    step(x[:512])
    flow.log_prob(x)
    flow.sample(10_000)
    return flow, step


def measure(family, dim, rounds):
    x = rows(dim, ROWS)
    built = {variant: build(family, dim, variant, x) for variant in VARIANTS}
    times, values = time_rounds(built, x, rounds)
    differences = {k: float(np.max(np.abs(np.subtract(values["gather"][k], values["sliced"][k]))))
                   for k in ("loss", "log_prob", "sample")}
    return times, differences


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="realnvp,nice",
                    help="comma-separated: " + ", ".join(RECIPES))
    ap.add_argument("--dims", default="8,64", help="comma-separated event dimensions (>= 3)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--json", help="write every timing to this file")
    a = ap.parse_args()
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    results = {}
    print("median ms over rounds: train step (512 rows) | log_prob 65,536 rows | sample 10,000")
    for family in a.families.split(","):
        if family not in RECIPES:
            raise SystemExit(f"--families: unknown family {family!r}; expected one of "
                             + ", ".join(RECIPES))
        for dim in (int(d) for d in a.dims.split(",")):
            times, differences = measure(family, dim, a.rounds)
            results[f"{family}/{dim}"] = {**times, "max_abs_difference": differences}
            print_medians(f"{family:8s} D={dim:3d}", times)
            print(f"{family:8s} D={dim:3d} largest difference, gather - sliced: "
                  + ", ".join(f"{k} {v:.2g}" for k, v in differences.items()), flush=True)
    if a.json:
        write_json(a.json, "benchmarks/permute_ab.py", started, results)


if __name__ == "__main__":
    main()
