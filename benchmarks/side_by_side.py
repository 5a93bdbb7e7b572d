"""What the side-by-side A/B scripts share (`spline_layout_ab.py`, `permute_ab.py`,
`shards_ab.py`, `narrow_ab.py`).

Each builds the same flow twice or more, one variant of the code each, and
times them in one process, the variants alternating round by round, so the
machine's drift falls on all of them alike.
"""

import json
import os
import statistics
import sys
import time

import numpy as np

DIGITS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench",
                      "data", "digits_train.npy")


def rows(dim, n):
    """`n` rows of `dim` values: the benchmark's digits (1,300 rows, tiled) for 64
    dimensions when the shared data is there, standard normal rows otherwise."""
    if dim == 64 and os.path.exists(DIGITS):
        x = np.load(DIGITS).astype("float32")
        return np.tile(x, (-(-n // len(x)), 1))[:n]
    return np.random.default_rng(0).normal(size=(n, dim)).astype("float32")


def median_step_ms(step, batches, losses):
    """Runs `step` on each of `batches`, appending each loss (pulled to the host,
    so every step is complete) to `losses`; returns the median step in ms."""
    took = []
    for b in batches:
        t = time.perf_counter()
        losses.append(float(step(b)))
        took.append(time.perf_counter() - t)
    return statistics.median(took) * 1e3


def time_rounds(built, x, rounds, steps=15, batch=512, samples=10_000):
    """Times every `(flow, step)` of `built` (a dict by variant name), `rounds` times.

    A round draws `steps` batches of `batch` rows of `x` (seeded), runs them
    through each variant's train step in turn (the median step of the round
    is kept), then times `flow.log_prob(x)` and `flow.sample(samples, seed=1)`.
    Returns `(times, values)`: `times[variant]` maps `train_ms`,
    `log_prob_<len(x)>_ms` and `sample_<samples>_ms` to one figure per round;
    `values[variant]` holds every loss and the last round's log-densities and
    samples (the variants get the same batches, so they can be compared).
    """
    rng = np.random.default_rng(0)
    keys = ("train_ms", f"log_prob_{len(x)}_ms", f"sample_{samples}_ms")
    times = {v: {k: [] for k in keys} for v in built}
    values = {v: {"loss": [], "log_prob": None, "sample": None} for v in built}
    for _ in range(rounds):
        batches = [x[rng.integers(0, len(x), batch)] for _ in range(steps)]
        for variant, (flow, step) in built.items():
            times[variant][keys[0]].append(median_step_ms(step, batches, values[variant]["loss"]))
            t = time.perf_counter()
            values[variant]["log_prob"] = flow.log_prob(x).numpy()
            times[variant][keys[1]].append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            values[variant]["sample"] = flow.sample(samples, seed=1).numpy()
            times[variant][keys[2]].append((time.perf_counter() - t) * 1e3)
    return times, values


def print_medians(label, times):
    """One line per variant: `label variant: ` and the median of each timing."""
    for variant, t in times.items():
        print(f"{label} {variant}: " + " | ".join(f"{statistics.median(v):8.2f}"
                                                 for v in t.values()), flush=True)


def write_json(path, script, started, results):
    """Writes every timing, with the command line and the start time, to `path`."""
    with open(path, "w") as f:
        json.dump({"argv": [script] + sys.argv[1:], "started": started, "results": results},
                  f, indent=1)
