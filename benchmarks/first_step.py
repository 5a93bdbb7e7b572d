"""Where the first train step of a flow goes: tracing, then XLA compilation and the first run.

    python benchmarks/first_step.py [--family nsf_coupling|nsf|maf|realnvp] [--repeats 3]
                                    [--background]

Builds the benchmark protocol's model (2-D, 5 transforms, hidden [64, 64],
8 bins on [-5, 5]) in a fresh process per repeat, traces
`kerasflows.training.make_train_step` on a batch of 512 (`get_concrete_function`),
then runs it once (XLA compiles on that call). Prints the medians and the
traced graph's op count. With `--background`, builds the step with
`background_compile=True` instead and times the end of the first step (run
as a graph) and the moment the XLA-compiled step takes over, training all
the while. XLA options can be tried through the `XLA_FLAGS` environment
variable, e.g. `XLA_FLAGS=--xla_backend_optimization_level=1`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, numpy as np, tensorflow as tf
from kerasflows import models
from kerasflows.training import make_train_step
family = sys.argv[1]
build = {"nsf_coupling": lambda: models.NSF(2, num_layers=5, hidden_units=(64, 64), bins=8,
                                            bound=5.0, autoregressive=False),
         "nsf": lambda: models.NSF(2, num_layers=5, hidden_units=(64, 64), bins=8, bound=5.0,
                                   autoregressive=True),
         "maf": lambda: models.MAF(2, num_layers=5, hidden_units=(64, 64)),
         "realnvp": lambda: models.RealNVP(2, num_layers=5, hidden_units=(64, 64))}[family]
keras.utils.set_random_seed(0)
flow = build()
x = tf.constant(np.random.default_rng(0).normal(size=(512, 2)).astype("float32"))
if sys.argv[2] == "background":
    step = make_train_step(flow, keras.optimizers.Adam(1e-3), background_compile=True)
    t0 = time.perf_counter()
    float(step(x))
    t1 = time.perf_counter()
    steps = 1
    while not step.compiled and step.error is None:
        float(step(x))
        steps += 1
    t2 = time.perf_counter()
    print(json.dumps({"first_step_s": t1 - t0, "compiled_after_s": t2 - t0,
                      "graph_steps": steps}))
    sys.exit(0)
step = make_train_step(flow, keras.optimizers.Adam(1e-3))
t0 = time.perf_counter()
graph = step.get_concrete_function(x).graph
t1 = time.perf_counter()
float(step(x))
t2 = time.perf_counter()
print(json.dumps({"trace_s": t1 - t0, "compile_and_run_s": t2 - t1,
                  "ops": len(graph.get_operations())}))
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default="nsf_coupling",
                   choices=["nsf_coupling", "nsf", "maf", "realnvp"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--background", action="store_true",
                   help="make_train_step(..., background_compile=True): time to the end of the "
                        "first (graph) step, and until the XLA-compiled step takes over")
    args = p.parse_args(argv)
    runs = []
    for _ in range(args.repeats):
        mode = "background" if args.background else "foreground"
        out = subprocess.run([sys.executable, "-c", CHILD, args.family, mode], capture_output=True,
                             text=True, timeout=600)
        lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
        if out.returncode or not lines:
            raise RuntimeError(f"the child failed: {out.stderr[-2000:]}")
        runs.append(json.loads(lines[-1]))
    print(f"family {args.family}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, "
          f"{args.repeats} fresh processes (medians):")
    keys = (("first_step_s", "compiled_after_s", "graph_steps") if args.background
            else ("trace_s", "compile_and_run_s", "ops"))
    for key in keys:
        print(f"  {key:18s} {statistics.median(r[key] for r in runs):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
