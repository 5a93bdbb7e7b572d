"""What the visualizer's compile cache saves: opening a model cold and with the cache filled.

    python benchmarks/viz_compile_cache.py [MODEL] [--repeats 3] [--out FILE.json]

Each repeat runs two fresh processes one after the other, both with
`visualizer.compile_cache` pointed at a new empty folder: the first
compiles everything (a first launch), the second reads what the first wrote
(any later launch). Each process opens MODEL (default
`saved_models/moons`) the way the app's compute thread does
(`backends.open_backend`) and runs the views' warm-up plan
(`views.warm_up_plan`: the coarse and default heatmaps, the samples, the
layers' traces), timing the open and every call. Prints the medians over
the repeats: the time to the default heatmap (open, coarse and exact
heatmap: what a user waits for after opening a model) and to the end of
the warm-up. No window is drawn; the cache does not change the drawing.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, os, sys, time
start = time.perf_counter()
from visualizer import compile_cache
assert compile_cache.enable() is not None
from visualizer import compute
from visualizer.backends import open_backend
from visualizer.views import warm_up_plan
path = sys.argv[1]
imported = time.perf_counter()
backend = open_backend("keras", path)
steps = [("open", time.perf_counter() - imported)]
info = {"invertible": backend.invertible, "has_trace": backend.has_trace}
for method, rows in warm_up_plan(info):
    t = time.perf_counter()
    compute.warm_up(backend, method, rows)
    steps.append((f"{method}/{rows}", time.perf_counter() - t))
print(json.dumps({"steps": steps, "import": imported - start}))
"""


def _model_file(model):
    return os.path.join(model, "flow.keras") if os.path.isdir(model) else model


def run_once(model, cache):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", QT_QPA_PLATFORM="offscreen")
    env["KERASFLOWS_VIZ_COMPILE_CACHE"] = cache
    env.pop("TF_XLA_FLAGS", None)
    out = subprocess.run([sys.executable, "-c", CHILD, _model_file(model)], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    steps = dict(result["steps"])
    names = [name for name, _ in result["steps"]]
    # the default heatmap: open, the coarse preview, then the exact 256x256 one
    upto = names.index("log_prob/65536") + 1 if "log_prob/65536" in names else len(names)
    return {"steps": steps, "to_heatmap": sum(steps[n] for n in names[:upto]),
            "warm_up_total": sum(steps.values()), "import": result["import"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", default=os.path.join(ROOT, "saved_models", "moons"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="write the runs and medians to this JSON file")
    args = p.parse_args(argv)
    runs = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            cache = os.path.join(tmp, "cache")
            cold = run_once(args.model, cache)
            cached = run_once(args.model, cache)
            size = sum(e.stat().st_size for e in os.scandir(cache))
            files = len(os.listdir(cache))
        runs.append({"cold": cold, "cached": cached, "cache_bytes": size, "cache_files": files})
        print(f"repeat {i + 1}: to the heatmap {cold['to_heatmap']:.2f} s cold, "
              f"{cached['to_heatmap']:.2f} s cached; warm-up {cold['warm_up_total']:.2f} / "
              f"{cached['warm_up_total']:.2f} s; cache {files} files, {size / 2**20:.1f} MB",
              flush=True)
    medians = {f"{kind}_{what}": statistics.median(r[kind][what] for r in runs)
               for kind in ("cold", "cached") for what in ("to_heatmap", "warm_up_total")}
    print("medians: " + ", ".join(f"{k} {v:.2f} s" for k, v in medians.items()))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"model": args.model, "runs": runs, "medians": medians}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
