"""What checking a tf.data stream's batches costs `Flow.fit` (`Flow.check_stream_data`).

    python benchmarks/stream_check.py [--family maf|realnvp|nsf|nsf_coupling] [--dim 2]
                                      [--rounds 10] [--out FILE]

One process, one flow (the protocol's model: 5 transforms, hidden [64, 64],
`compile(Adam(1e-3))`, XLA by `jit_compile="auto"`), one
`tf.data.Dataset` of 30,720 standard-normal rows in batches of 512. Each
round runs `fit(dataset, epochs=2)` once with the check on (the default)
and once with `flow.check_stream_data = False`, in random order; prints the
median time a step of each and their ratio.
"""

import argparse
import json
import random
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from kerasflows import models


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="maf", choices=["maf", "realnvp", "nsf", "nsf_coupling"])
    p.add_argument("--dim", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--out", help="also write the step times here (JSON)")
    args = p.parse_args()
    make = {"maf": models.MAF, "realnvp": models.RealNVP, "nsf_coupling": models.NSF,
            "nsf": lambda *a, **k: models.NSF(*a, autoregressive=True, **k)}[args.family]
    keras.utils.set_random_seed(0)
    flow = make(args.dim, num_layers=5, hidden_units=(64, 64))
    flow.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = np.random.default_rng(0).normal(size=(30_720, args.dim)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices(x).batch(512)
    steps = 2 * 60
    for checked in (True, False):               # compiles the step for each
        flow.check_stream_data = checked
        flow.fit(data, epochs=1, verbose=0)
    times = {"checked": [], "unchecked": []}
    rng = random.Random(0)
    for _ in range(args.rounds):
        order = ["checked", "unchecked"]
        rng.shuffle(order)
        for variant in order:
            flow.check_stream_data = variant == "checked"
            start = time.perf_counter()
            flow.fit(data, epochs=2, verbose=0)
            times[variant].append((time.perf_counter() - start) / steps * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.family}, {args.dim}-D, batch 512, medians of {args.rounds} rounds: checked "
          f"{med['checked']:.3f} ms a step, unchecked {med['unchecked']:.3f} ms "
          f"({med['checked'] - med['unchecked']:+.3f} ms, "
          f"{med['checked'] / med['unchecked']:.3f}x)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "ms_per_step": times, "medians": med}, f, indent=1)


if __name__ == "__main__":
    main()
