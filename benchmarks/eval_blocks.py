#!/usr/bin/env python3
"""Spline flows evaluated whole and in blocks (`eval_mode="xla"` or "graph"), side by side.

    .venv/bin/python benchmarks/eval_blocks.py [--mode xla|graph] [--rounds 2] [--calls 7]
        [--configs nsf:2:density:65536,nsf_ar:64:density:65536,...]
        [--block-rows 1024,4096,...] [--json out.json]

A large batch through a flow whose layers allow it runs as an XLA loop over
blocks of rows (`kerasflows.eval_calls.in_blocks`); spline layers ask for
`kerasflows.layers.splines.spline_block_rows(D, 8192)` rows (8,192 for 2-D,
1,024 for 64-D), and spline coupling layers of fewer than
`COUPLING_BLOCKS_FROM_DIM` dimensions for none. This script measures both
ways for each configuration (a 5-layer NSF, hidden [64, 64], 8 bins,
untrained: the cost does not depend on the weights): `whole` forces the
whole batch, `blocks` forces blocks of `spline_block_rows` rows. Each run is
a fresh process; the two alternate, `--rounds` times. `--block-rows`
replaces `blocks` by one run per given block size (forced on every spline
layer, in either mode). Per run: the first
call (tracing and XLA compilation included), the median of `--calls` calls
after it, and the peak anonymous memory during them above the memory before
the first call (`benchmarks/memory.py`'s probe). Printed: medians over
rounds and the ratios blocks / whole.

With `--mode graph` the flow runs as a plain graph (`eval_mode="graph"`),
where blocks are used only when a layer asks for fewer than 8,192 rows
(spline layers on 16-D data and wider), so give configurations of 16
dimensions or more.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
#: recipe:event_dim:call[:rows]; density is log_prob of N(0, I) rows, sample draws rows.
DEFAULT_CONFIGS = ("nsf:2:density:65536", "nsf:2:sample:100000", "nsf_ar:2:density:65536",
                   "nsf_ar:2:sample:100000", "nsf:4:density:65536", "nsf:8:density:65536",
                   "nsf:16:density:65536", "nsf:64:density:65536", "nsf_ar:64:density:65536",
                   "nsf:64:sample:65536")
MB = 2 ** 20


def child(config, way, calls, mode):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, HERE)
    import numpy as np
    import tensorflow as tf
    import kerasflows
    from kerasflows import eval_calls
    from kerasflows.layers import splines
    from memory import ResidentMemory
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    recipe, dim, call, n = config.split(":")
    dim, n = int(dim), int(n)
    if way.startswith("rows"):        # forced: every spline layer asks for this many rows
        forced = int(way[4:])
        # and the graph mode blocks whenever a layer asks (not only below the default)
        eval_calls.EVAL_BLOCK_ROWS = max(eval_calls.EVAL_BLOCK_ROWS, 2 * forced)
    for cls in (splines.SplineCoupling, splines.SplineAutoregressive):
        cls.eval_block_rows = ((lambda self, target: None) if way == "whole" else
                               (lambda self, target: forced) if way.startswith("rows") else
                               (lambda self, target: splines.spline_block_rows(self.event_dim,
                                                                               target)))
    flow = kerasflows.models.NSF(dim, num_layers=5, hidden_units=(64, 64),
                                 autoregressive=recipe == "nsf_ar")
    flow.eval_mode = mode
    x = np.random.default_rng(0).normal(size=(n, dim)).astype("float32")
    flow.log_prob(x[:10])
    run = ((lambda: flow.log_prob(x).numpy()) if call == "density" else
           (lambda: flow.sample(n, seed=1).numpy()))
    memory = ResidentMemory()
    memory.phase("before")
    t = time.perf_counter()
    run()
    first = time.perf_counter() - t
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    memory.phase("calls")
    memory.close()
    blocked = sorted({key[2] for key in flow._compiled if key[2]})
    return {"config": config, "way": way, "mode": mode, "first_s": first,
            "median_ms": 1e3 * statistics.median(times),
            "memory_mb": (memory.phases["calls"]["peak"]["anon"]
                          - memory.phases["before"]["end"]["anon"]) / MB,
            "block_rows": blocked}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                    help="comma list of recipe:dim:call:rows (recipe nsf or nsf_ar, call "
                         "density or sample)")
    ap.add_argument("--mode", choices=("xla", "graph"), default="xla")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--calls", type=int, default=7)
    ap.add_argument("--block-rows",
                    help="comma list of rows per block to force on every spline layer, each "
                         "measured beside the whole batch (default: the rows the layers ask "
                         "for); in graph mode these block whatever their size")
    ap.add_argument("--json")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(*a.child, a.calls, a.mode)))
        return 0
    others = ([f"rows{int(r)}" for r in a.block_rows.split(",")] if a.block_rows
              else ["blocks"])
    rows = []
    for config in a.configs.split(","):
        runs = {way: [] for way in ["whole", *others]}
        for _ in range(a.rounds):
            for way in runs:
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child",
                                      config, way, "--calls", str(a.calls),
                                      "--mode", a.mode],
                                     capture_output=True, text=True)
                if out.returncode:
                    raise SystemExit(f"{config} {way}: {out.stderr.strip()[-500:]}")
                runs[way].append(json.loads(out.stdout.strip().splitlines()[-1]))
        med = {way: {k: statistics.median(r[k] for r in rs)
                     for k in ("first_s", "median_ms", "memory_mb")} for way, rs in runs.items()}
        whole = med["whole"]
        line = (f"{config:24s} whole {whole['median_ms']:8.1f} ms {whole['memory_mb']:6.0f} MB "
                f"first {whole['first_s']:.2f} s")
        for way in others:
            m = med[way]
            row = {"config": config, "way": way, "block_rows": runs[way][0]["block_rows"],
                   "whole": whole, "blocks": m,
                   "time_ratio": m["median_ms"] / whole["median_ms"],
                   "memory_ratio": m["memory_mb"] / max(whole["memory_mb"], 1)}
            rows.append(row)
            line += (f" | rows {row['block_rows']}: {m['median_ms']:8.1f} ms "
                     f"{m['memory_mb']:6.0f} MB first {m['first_s']:.2f} s time "
                     f"x{row['time_ratio']:.2f} memory x{row['memory_ratio']:.2f}")
        print(line, flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"command": " ".join(sys.argv), "mode": a.mode, "rounds": a.rounds,
                       "calls": a.calls,
                       "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
