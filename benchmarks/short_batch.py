"""What a short last batch costs `Flow.fit`: padded to the full batches' size, or
compiled for.

    python benchmarks/short_batch.py [--family nsf|nsf_coupling|maf|realnvp] [--rows 1000]
                                     [--batch 512] [--repeats 3] [--out FILE]

Trains the benchmark protocol's 2-D model (5 transforms, hidden [64, 64])
with `Flow.fit` as a user calls it (`compile(Adam(1e-3))`, XLA by
`jit_compile="auto"`) on `--rows` standard-normal rows in batches of
`--batch`, for 2 epochs, in a fresh process per run: once as the library
does it (the short last batch padded, `Flow.pads_short_batches()`) and once
with padding off (the step compiled again for the short batch), the two
alternating which goes first. Prints each run's epoch times and the medians
over the repeats.
"""

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
import keras, numpy as np
from kerasflows import models
family, rows, batch, pad = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
make = {"nsf": lambda *a, **k: models.NSF(*a, autoregressive=True, **k),
        "nsf_coupling": models.NSF, "maf": models.MAF, "realnvp": models.RealNVP}[family]
keras.utils.set_random_seed(0)
flow = make(2, num_layers=5, hidden_units=(64, 64))
if not pad:
    flow.pads_short_batches = lambda: False
flow.compile(optimizer=keras.optimizers.Adam(1e-3))
x = np.random.default_rng(0).normal(size=(rows, 2)).astype("float32")
times = []
class Clock(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        times.append(time.perf_counter() - self.start)
flow.fit(x, batch_size=batch, epochs=2, verbose=0, callbacks=[Clock()])
print(json.dumps({"epochs_s": times, "padded": flow.train_function.padded}))
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="nsf", choices=["nsf", "nsf_coupling", "maf", "realnvp"])
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="also write the runs and medians here (JSON)")
    args = p.parse_args()
    runs = {"padded": [], "compiled": []}
    for r in range(args.repeats):
        order = ("padded", "compiled") if r % 2 == 0 else ("compiled", "padded")
        for variant in order:
            out = subprocess.run([sys.executable, "-c", CHILD, args.family, str(args.rows),
                                  str(args.batch), "1" if variant == "padded" else "0"],
                                 capture_output=True, text=True, check=True)
            run = json.loads(out.stdout.strip().splitlines()[-1])
            runs[variant].append(run)
            print(f"{variant:9s} epochs {', '.join(f'{t:.2f}' for t in run['epochs_s'])} s, "
                  f"padded batches {run['padded']}", flush=True)
    medians = {v: [statistics.median(run["epochs_s"][e] for run in rs) for e in range(2)]
               for v, rs in runs.items()}
    print(f"{args.family}, {args.rows} rows in batches of {args.batch} "
          f"(last {args.rows % args.batch}), medians of {args.repeats} fresh processes:")
    for v, m in medians.items():
        print(f"  {v:9s} first epoch {m[0]:.2f} s, second {m[1]:.3f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "runs": runs, "medians_s": medians}, f, indent=1)


if __name__ == "__main__":
    main()
