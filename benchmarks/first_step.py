"""Where the first train step of a flow goes: tracing, then XLA compilation and the first run.

    python benchmarks/first_step.py [--family nsf_coupling|nsf|maf|realnvp] [--dim 2] [--repeats 3]
                                    [--mode xla|background|graph|eager|fit]
                                    [--full-grappler | --ab] [--no-grappler] [--passes]
                                    [--wait SECONDS] [--context N] [--keras-build]

Builds the benchmark protocol's model (2-D unless `--dim`, 5 transforms,
hidden [64, 64], 8 bins on [-5, 5]) in a fresh process per repeat and times its first train
steps on a batch of 512 (`kerasflows.training.make_train_step`, Adam 1e-3).
Prints medians over the repeats. Modes:

- `xla` (default): traces the XLA step (`get_concrete_function`), then runs
  it once (XLA compiles on that call); also the traced graph's op count.
- `background`: the step built with `background_compile=True` (what the
  benchmark plugin runs): the end of the first step (run as a graph) and the
  moment the XLA-compiled step takes over, training all the while.
- `graph`: the step with `jit_compile=False` (the graph tier of the
  background step): building the flow, tracing, the first run (TensorFlow's
  graph optimiser, Grappler, runs on it) and the median of the next 99 steps.
- `eager`: the same update with no `tf.function` at all (a `GradientTape`
  and the optimizer's `apply_gradients`, op by op): the first step and the
  median of the next 10, i.e. what an eager tier before the graph would give.
- `fit`: `Flow.fit` as a user calls it (`compile(Adam(1e-3))`, XLA by
  `jit_compile="auto"`; one epoch of 4 batches of 512): the first `fit`
  call (tracing and compilation included), the second, and how often the
  train step was traced. `Flow.make_train_function` builds the optimizer
  before the step's first trace; `--keras-build` skips that and leaves it
  to Keras (inside the trace, which makes TensorFlow trace the step twice)
  for an A/B: run once with and once without it. `--context N` makes the
  flow conditional on N context features (standard normal).

The library runs its graphs (the graph tier of `background`, `graph`)
without Grappler's CPU-inert passes (`kerasflows.graph_calls`);
`--full-grappler` runs them with all of TensorFlow's passes instead
(`kerasflows.graph_calls.ENABLED = False`), for an A/B; `graph` prints the
loss after 100 steps as a hexadecimal float, to compare the numbers bit for
bit. `--no-grappler` switches Grappler off in the child
(`tf.config.optimizer.set_experimental_options({"disable_meta_optimizer":
True})`, process-wide). `--passes` (with `graph` or `background`) reads
Grappler's own timing log (`TF_CPP_VMODULE=meta_optimizer=1`) and prints
each pass's total time over the function's optimisation (medians), and how
many nodes it removed. XLA options can be tried through the `XLA_FLAGS`
environment variable, e.g. `XLA_FLAGS=--xla_backend_optimization_level=1`.

`--ab` runs each repeat twice, light and with all passes, alternating which
goes first, and prints both. `--wait S` sleeps `S` seconds with nothing
running before each fresh process, as between the harness's jobs: this
machine pages out memory untouched for a minute (README, Benchmarks), so
the child may have to read TensorFlow back from disk, as a benchmark job
that starts after a pause may (its import time, `import_s`, shows whether
it did); every run's figures are printed then, not only the medians.
"""

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import time

CHILD = r"""
import contextlib, json, os, sys, time
mode, no_grappler, full_grappler = sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1"
t_import = time.perf_counter()
import keras, numpy as np, tensorflow as tf
from kerasflows import graph_calls, models
imported = time.perf_counter() - t_import
graph_calls.ENABLED = not full_grappler
from kerasflows.training import make_train_step
if no_grappler:
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
family, dim = sys.argv[1], int(sys.argv[5])
context_dim, keras_build = int(sys.argv[6]) or None, sys.argv[7] == "1"
common = dict(num_layers=5, hidden_units=(64, 64), context_dim=context_dim)
build = {"nsf_coupling": lambda: models.NSF(dim, bins=8, bound=5.0, autoregressive=False,
                                            **common),
         "nsf": lambda: models.NSF(dim, bins=8, bound=5.0, autoregressive=True, **common),
         "maf": lambda: models.MAF(dim, **common),
         "realnvp": lambda: models.RealNVP(dim, **common)}[family]
keras.utils.set_random_seed(0)
x = tf.constant(np.random.default_rng(0).normal(size=(512, dim)).astype("float32"))
t_build = time.perf_counter()
flow = build()
optimizer = keras.optimizers.Adam(1e-3)
built = time.perf_counter() - t_build


def timed(fn, n):         # seconds of each of n calls fn(x), and the last call's loss
    out = []
    for _ in range(n):
        t = time.perf_counter()
        loss = float(fn(x))
        out.append(time.perf_counter() - t)
    return out, loss


if mode == "fit":
    import kerasflows
    rows = np.random.default_rng(1).normal(size=(4 * 512, dim)).astype("float32")
    data = rows if context_dim is None else (
        rows, np.random.default_rng(2).normal(size=(len(rows), context_dim)).astype("float32"))
    flow.compile(optimizer=optimizer)
    if keras_build:           # the library's early build skipped: Keras builds in the trace
        def keras_make(force=False):
            keras_own = super(kerasflows.training.FlatStepFunctions, flow).make_train_function
            return flow._step_function("train_function", flow.train_step, keras_own, force)
        flow.make_train_function = keras_make
    fits = []
    for _ in range(2):
        t = time.perf_counter()
        flow.fit(data, batch_size=512, epochs=1, verbose=0)
        fits.append(time.perf_counter() - t)
    fn = getattr(flow.train_function, "_fn", None)
    rec = {"build_s": built, "first_fit_s": fits[0], "second_fit_s": fits[1],
           "traces": fn.experimental_get_tracing_count() if fn is not None else float("nan")}
elif mode == "background":
    step = make_train_step(flow, optimizer, background_compile=True)
    t0 = time.perf_counter()
    float(step(x))
    t1 = time.perf_counter()
    steps = 1
    while not step.compiled and step.error is None:
        float(step(x))
        steps += 1
    t2 = time.perf_counter()
    rec = {"first_step_s": t1 - t0, "compiled_after_s": t2 - t0, "graph_steps": steps}
elif mode == "eager":
    weights = flow.trainable_variables

    def eager_step(x):
        with tf.GradientTape() as tape:
            loss = flow.compute_loss(y_pred=flow(x, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss
    (first, *rest), _ = timed(eager_step, 11)
    rec = {"build_s": built, "first_step_s": first, "next_step_ms": 1e3 * np.median(rest)}
else:
    step = make_train_step(flow, optimizer, jit_compile=mode == "xla")
    t0 = time.perf_counter()
    graph = step.get_concrete_function(x).graph
    t1 = time.perf_counter()
    light = graph_calls.light_calls() if mode == "graph" else contextlib.nullcontext()
    with light:             # a graph runs as the graph tier of BackgroundCompiledStep
        (first, *rest), loss = timed(step, 100 if mode == "graph" else 1)
    rec = {"build_s": built, "trace_s": t1 - t0, "ops": len(graph.get_operations())}
    if mode == "graph":
        rec.update(first_run_s=first, next_step_ms=1e3 * np.median(rest), loss_100=loss.hex())
    else:
        rec["compile_and_run_s"] = first
rec["import_s"] = imported
print(json.dumps(rec))
"""

KEYS = {"xla": ("build_s", "trace_s", "compile_and_run_s", "ops"),
        "background": ("first_step_s", "compiled_after_s", "graph_steps"),
        "graph": ("build_s", "trace_s", "first_run_s", "next_step_ms", "ops", "loss_100"),
        "eager": ("build_s", "first_step_s", "next_step_ms"),
        "fit": ("build_s", "first_fit_s", "second_fit_s", "traces")}

# meta_optimizer.cc's line per pass: "<pass>: Graph size after: N nodes (D), E edges (F), time = Tms."
PASS_LINE = re.compile(r"meta_optimizer\.cc:\d+\] (?P<name>[^:{]+)[^:]*: Graph size after: "
                       r"\d+ nodes \((?P<nodes>-?\d+)\).*time = (?P<ms>[\d.]+)ms")


def grappler_passes(stderr):
    """{pass: (total ms, nodes removed)} from one child's meta_optimizer log."""
    passes = collections.defaultdict(lambda: [0.0, 0])
    for m in PASS_LINE.finditer(stderr):
        passes[m["name"].strip()][0] += float(m["ms"])
        passes[m["name"].strip()][1] -= int(m["nodes"])
    return dict(passes)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default="nsf_coupling",
                   choices=["nsf_coupling", "nsf", "maf", "realnvp"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dim", type=int, default=2,
                   help="data dimensions (the protocol: 2, and 64 for digits); the batch is "
                        "standard normal")
    p.add_argument("--mode", default="xla", choices=sorted(KEYS),
                   help="xla: trace, then compile and run; background: "
                        "make_train_step(..., background_compile=True), time to the end of the "
                        "first (graph) step and until the XLA-compiled step takes over; graph: "
                        "jit_compile=False, trace, first run and the next steps; eager: no "
                        "tf.function, the first step and the next ones; fit: Flow.fit's "
                        "first and second call")
    p.add_argument("--background", action="store_true", help="the same as --mode background")
    p.add_argument("--full-grappler", action="store_true",
                   help="run the library's graphs with all of Grappler's passes "
                        "(kerasflows.graph_calls.ENABLED = False)")
    p.add_argument("--ab", action="store_true",
                   help="each repeat light and with all passes (alternating which goes "
                        "first); prints both")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="sleep this long with nothing running before each fresh process "
                        "(the machine pages TensorFlow out after about a minute), and print "
                        "every run")
    p.add_argument("--context", type=int, default=0, metavar="N",
                   help="fit mode: a conditional flow on N context features (0: "
                        "unconditional)")
    p.add_argument("--keras-build", action="store_true",
                   help="fit mode: leave the optimizer's build to Keras (inside the step's "
                        "first trace) instead of Flow.make_train_function")
    p.add_argument("--no-grappler", action="store_true",
                   help="switch TensorFlow's graph optimiser (Grappler) off in the child")
    p.add_argument("--passes", action="store_true",
                   help="print the time of each Grappler pass (graph and background modes)")
    args = p.parse_args(argv)
    mode = "background" if args.background else args.mode
    if args.ab and args.full_grappler:
        p.error("--ab runs both the light passes and all of them; leave out --full-grappler")
    if args.wait < 0:
        p.error(f"--wait must be >= 0 seconds; received {args.wait}")
    if args.context < 0:
        p.error(f"--context must be >= 0 features; received {args.context}")
    if args.context and mode != "fit":       # the other modes' steps take x alone
        p.error(f"--context needs --mode fit (got --mode {mode})")
    if args.keras_build and mode != "fit":
        p.error(f"--keras-build needs --mode fit (got --mode {mode})")
    if args.passes and mode not in ("graph", "background"):
        p.error(f"--passes needs --mode graph or background (got --mode {mode}): only "
                "graphs that run without XLA go through Grappler's passes")
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "0" if args.passes else env.get("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.passes:
        env["TF_CPP_VMODULE"] = "meta_optimizer=1"
    variants = [False, True] if args.ab else [args.full_grappler]
    runs = {v: [] for v in variants}
    passes = {v: [] for v in variants}
    for i in range(args.repeats):
        for full in (variants if i % 2 == 0 else variants[::-1]):
            if args.wait:
                time.sleep(args.wait)
            out = subprocess.run([sys.executable, "-c", CHILD, args.family, mode,
                                  "1" if args.no_grappler else "0",
                                  "1" if full else "0", str(args.dim), str(args.context),
                                  "1" if args.keras_build else "0"],
                                 capture_output=True, text=True, timeout=600, env=env)
            lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
            if out.returncode or not lines:
                raise RuntimeError(f"the child failed: {out.stderr[-2000:]}")
            runs[full].append(json.loads(lines[-1]))
            passes[full].append(grappler_passes(out.stderr))
    for full in variants:
        report(args, mode, full, runs[full], passes[full])
    return 0


def _figure(key, value):
    """A count (`ops`, `graph_steps`) as a whole number, seconds and ms to 2 places."""
    return f"{value:.0f}" if key in ("ops", "graph_steps", "traces") else f"{value:.2f}"


def report(args, mode, full_grappler, runs, passes):
    """Prints the medians of `runs` (and each run, after `--wait`)."""
    grappler = ("off" if args.no_grappler else "all passes" if full_grappler
                else "light (kerasflows.graph_calls)")
    wait = f", {args.wait:g} s idle before each" if args.wait else ""
    context = f", context {args.context}" if args.context else ""
    build = ", optimizer built by Keras in the trace" if args.keras_build else ""
    print(f"family {args.family}, {args.dim}-D{context}, mode {mode}{build}, Grappler {grappler}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, {len(runs)} fresh processes{wait} "
          "(medians):")
    for key in KEYS[mode] + ("import_s",):
        if key == "loss_100":
            print(f"  {key:18s} {', '.join(sorted({r[key] for r in runs}))}")
            continue
        print(f"  {key:18s} {_figure(key, statistics.median(r[key] for r in runs))}")
    if args.wait:
        for key in ("import_s",) + KEYS[mode]:
            if key != "loss_100":
                print(f"  each {key:17s} " + ", ".join(_figure(key, r[key]) for r in runs))
    if args.passes:
        names = sorted({n for ps in passes for n in ps},
                       key=lambda n: -statistics.median(ps.get(n, (0, 0))[0] for ps in passes))
        total = statistics.median(sum(v[0] for v in ps.values()) for ps in passes)
        print(f"  Grappler passes, ms (all {total:.0f}), nodes removed:")
        for n in names:
            ms = statistics.median(ps.get(n, (0, 0))[0] for ps in passes)
            removed = statistics.median(ps.get(n, (0, 0))[1] for ps in passes)
            print(f"    {n:32s} {ms:7.1f}  {removed:6.0f}")


if __name__ == "__main__":
    sys.exit(main())
