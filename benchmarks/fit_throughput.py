"""`Flow.fit` step time: the defaults against Keras' loop, a plain graph and `make_train_step`.

    python benchmarks/fit_throughput.py [--families maf,realnvp,nsf_coupling]
                                        [--variants fit,...] [--repeats 2] [--epochs 10]
                                        [--out FILE.json]

The benchmark protocol's 2-D models (5 transforms, hidden [64, 64]; splines 8
bins on [-5, 5]) on `../shared/bench/data/moons_train.npy` (50,000 rows),
`compile(Adam(1e-3))` and `fit(batch_size=512, epochs=1)` called `--epochs`
times, each variant in a fresh process, alternating process by process:

- `fit`: the defaults (`Flow.flat_step_calls`, and `jit_compile="auto"`,
  which a Flow resolves to XLA on CPUs too);
- `fit_keras_loop`: XLA, Keras' own train function (`flat_step_calls = False`);
- `fit_graph`: flat step calls, `jit_compile=False` (a TensorFlow graph);
- `fit_keras_default`: what Keras alone does on a CPU-only machine: its own
  train function, no XLA (`flat_step_calls = False`, `jit_compile=False`);
- `make_train_step`: `background_compile=True` on one shard, in a plain loop
  over the same batches (the peer benchmark's plugin runs it with
  `background_compile=100` and `shards=2`).

Per process: the minimum and the median over epochs 2.. of the wall time
per step; the table gives the medians of those over the repeats. 2 threads,
as the peer protocol.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "bench", "data", "moons_train.npy")

CHILD = r"""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, numpy as np, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(2)
from kerasflows import models
from kerasflows.training import make_train_step
family, variant, epochs, data = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
build = {"maf": lambda: models.MAF(2, num_layers=5, hidden_units=(64, 64)),
         "realnvp": lambda: models.RealNVP(2, num_layers=5, hidden_units=(64, 64)),
         "nsf_coupling": lambda: models.NSF(2, num_layers=5, hidden_units=(64, 64), bins=8,
                                            bound=5.0)}[family]
x = np.load(data).astype("float32")
steps = -(-len(x) // 512)
keras.utils.set_random_seed(0)
flow = build()
if variant == "make_train_step":
    step = make_train_step(flow, keras.optimizers.Adam(1e-3), background_compile=True)
    rng = np.random.default_rng(0)
    def epoch():
        p = rng.permutation(len(x))
        for i in range(0, len(x), 512):
            float(step(x[p[i:i + 512]]))
    epoch(); step.wait()
else:
    flow.flat_step_calls = variant in ("fit", "fit_graph")
    flow.compile(optimizer=keras.optimizers.Adam(1e-3),
                 jit_compile={"fit": "auto", "fit_keras_loop": True}.get(variant, False))
    epoch = lambda: flow.fit(x, batch_size=512, epochs=1, verbose=0)
times = []
for _ in range(epochs):
    t = time.perf_counter(); epoch(); times.append((time.perf_counter() - t) / steps * 1e3)
print(json.dumps({"ms_per_step": times}))
"""


VARIANTS = ("fit", "fit_keras_loop", "fit_graph", "fit_keras_default", "make_train_step")


def run(family, variant, epochs):
    out = subprocess.run([sys.executable, "-c", CHILD, family, variant, str(epochs), DATA],
                         capture_output=True, text=True, check=True)
    ms = json.loads(out.stdout.strip().splitlines()[-1])["ms_per_step"][1:]
    return {"min_ms": min(ms), "median_ms": statistics.median(ms), "ms_per_step": ms}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="maf,realnvp,nsf_coupling")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated subset of " + ",".join(VARIANTS))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10,
                    help="epochs per process, >= 2 (the first, with the compile, is left out)")
    ap.add_argument("--out", help="JSON file for the results (a .md table is written beside it)")
    a = ap.parse_args()
    variants = tuple(a.variants.split(","))
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"--variants: unknown {unknown}; expected a comma list from {list(VARIANTS)}")
    if a.epochs < 2:
        ap.error(f"--epochs must be >= 2 (epoch 1, with the compile, is left out); "
                 f"received {a.epochs}")
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    runs = {}
    for family in a.families.split(","):
        for r in range(a.repeats):
            for v in variants:
                res = run(family, v, a.epochs)
                runs.setdefault(family, {}).setdefault(v, []).append(res)
                print(f"{family:13s} {v:16s} repeat {r}: min {res['min_ms']:.2f} ms, "
                      f"median {res['median_ms']:.2f} ms per step", flush=True)
    lines = [f"# Flow.fit throughput, {started}", "",
             f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
             f"{platform.python_version()}. Command: `{' '.join(sys.argv)}`.", "",
             "ms per step of 512 rows (moons, 50,000 rows, 98 steps an epoch); per process the "
             "minimum and median over epochs 2.., then the median over processes "
             f"({a.repeats} per variant, alternating).", "",
             "| family | " + " | ".join(f"{v}: min / median" for v in variants)
             + " | fit_keras_default / fit (min, median) |",
             "|---|" + "---|" * (len(variants) + 1)]
    for family, res in runs.items():
        med = {v: {k: statistics.median(r[k] for r in res[v]) for k in ("min_ms", "median_ms")}
               for v in variants}
        cell = lambda v: f"{med[v]['min_ms']:.2f} / {med[v]['median_ms']:.2f}"
        ratio = lambda k: (f"{med['fit_keras_default'][k] / med['fit'][k]:.2f}x"
                           if {"fit", "fit_keras_default"} <= set(variants) else "-")
        lines.append(f"| {family} | " + " | ".join(cell(v) for v in variants)
                     + f" | {ratio('min_ms')}, {ratio('median_ms')} |")
    table = "\n".join(lines)
    print(table)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"started": started, "argv": sys.argv, "runs": runs}, f, indent=1)
        with open(os.path.splitext(a.out)[0] + ".md", "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
