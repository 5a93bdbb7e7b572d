"""Side by side, in one process: the two layouts of the spline kernel (`SplineKnots.transform`).

    python benchmarks/spline_layout_ab.py [--families nsf,nsf_coupling] [--dims 2,8,64]
                                          [--rounds 8] [--json out.json]

For each family and dimension, builds the benchmark protocol's flow twice
(5 layers, hidden [64, 64], 8 bins on [-5, 5], seed 0): once traced with
the parameters laid out `[bins, n, batch]` (`BATCH_INNER_MIN_DIMS` set out
of reach), once `[bins, batch, n]` wherever more than one dimension is
transformed at once (`BATCH_INNER_MIN_DIMS = 2`; the one-dimension steps of
NSF-AR sampling keep `[bins, 1, batch]`). Then, the two alternating, times:

- the training step (`make_train_step`, XLA, batches of 512): `--rounds`
  rounds of 15 steps each (the same batches for both layouts), the median
  step of each round;
- `log_prob` of 8,192 rows and `sample(10_000)` with `eval_mode="xla"`
  (`side_by_side.time_rounds`).

Data: the benchmark's digits for 64 dimensions (1,300 rows, tiled to 8,192), standard
normal rows otherwise. Prints the medians over rounds. Which layout a flow
gets by default depends only on its number of transformed dimensions (see
`kerasflows.layers.spline_knots.BATCH_INNER_MIN_DIMS`).
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerasflows import models, training  # noqa: E402
from kerasflows.layers import spline_knots  # noqa: E402
from side_by_side import print_medians, rows, time_rounds, write_json  # noqa: E402

LAYOUTS = {"[bins, n, batch]": 10 ** 9, "[bins, batch, n]": 2}


def build(family, dim, layout, x):
    """The flow and its step, traced (and compiled) with `layout` on the rows `x`."""
    spline_knots.BATCH_INNER_MIN_DIMS = LAYOUTS[layout]
    keras.utils.set_random_seed(0)
    flow = models.NSF(dim, num_layers=5, hidden_units=(64, 64), bins=8, bound=5.0,
                      autoregressive=family == "nsf")
    flow.eval_mode = "xla"
    step = training.make_train_step(flow, keras.optimizers.Adam(1e-3))
    step(x[:512])
    flow.log_prob(x)
    flow.sample(10_000)
    return flow, step


def measure(family, dim, rounds):
    x = rows(dim, 8192)
    built = {layout: build(family, dim, layout, x) for layout in LAYOUTS}
    spline_knots.BATCH_INNER_MIN_DIMS = 8
    return time_rounds(built, x, rounds)[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="nsf,nsf_coupling",
                    help="comma-separated: nsf (autoregressive), nsf_coupling")
    ap.add_argument("--dims", default="2,8,64", help="comma-separated event dimensions")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--json", help="write every timing to this file")
    a = ap.parse_args()
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    results = {}
    print("median ms over rounds: train step (512 rows) | log_prob 8,192 rows | sample 10,000")
    for family in a.families.split(","):
        if family not in ("nsf", "nsf_coupling"):
            raise SystemExit(f"--families: unknown family {family!r}; expected nsf or nsf_coupling")
        for dim in (int(d) for d in a.dims.split(",")):
            times = measure(family, dim, a.rounds)
            results[f"{family}/{dim}"] = times
            print_medians(f"{family:13s} D={dim:3d}", times)
    if a.json:
        write_json(a.json, "benchmarks/spline_layout_ab.py", started, results)


if __name__ == "__main__":
    main()
