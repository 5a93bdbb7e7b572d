"""Side by side: the visualizer's density pass with the unrolled spline kernel and with the training one.

    python benchmarks/spline_kernel_ab.py [MODEL ...] [--repeats 30] [--json out.json]

For each shipped 2-D spline model (default: saved_models/moons and
saved_models/rings), loads two `kerasflows.tabulate` copies in one process:
one evaluates its splines with `SplineKnots.unrolled_kernel` (what the
visualizer runs, there reading its slopes from the table), the other with
`SplineKnots.kernel` (the one training differentiates), both given every
parameter column and each compiled by XLA on its own. Then times `log_prob` on
the 256x256 grid of the density view (a new 1% zoom each call, so nothing is
cached), the two copies alternating, back to back and after 0.2 s idle (as
when a user zooms after a pause). Prints medians, the ratio, and the largest
difference between the two copies' log-densities.
"""

import argparse
import json
import os
import statistics
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerasflows.layers.splines import SplineCoupling  # noqa: E402
from visualizer.backends import KerasBackend  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def backend_with(path, method):
    """A tabulated backend whose spline couplings take all `3 * bins - 1` parameter columns
    from their table and run `SplineKnots.<method>` on them under XLA.

    (Left alone, the tabulated layers run `compiled_table_kernel`: the unrolled
    kernel reading its slopes from the table. Both copies here get every column,
    so the two kernels are compared on the same input.)
    """
    backend = KerasBackend(path)
    for layer in backend.flow.flow_layers:
        if isinstance(layer, SplineCoupling) and layer.table is not None:
            layer.transform_part = types.MethodType(_all_columns(method), layer)
    return backend


def _all_columns(method):
    """A tabulated `SplineCoupling.transform_part` that runs `SplineKnots.<method>`."""
    kernels = {}

    def transform_part(layer, x0, x1, context, inverse):
        n, p = layer.transformed, layer.params_per_dim
        params = tf.reshape(layer.table.columns(x0, np.arange(n * p).reshape(n, p).T.ravel()),
                            [p, n, -1])
        if inverse not in kernels:
            kernels[inverse] = tf.function(
                lambda q, v: getattr(layer.knots, method)(q, v, inverse),
                jit_compile=True, autograph=False)
        y1, log_det = kernels[inverse](params, tf.transpose(x1))
        return tf.transpose(y1), tf.reduce_sum(log_det, 0)
    return transform_part


def measure(path, repeats):
    backends = {"unrolled": backend_with(path, "unrolled_kernel"),
                "kernel": backend_with(path, "kernel")}
    g = np.linspace(-3.0, 3.0, 256, dtype=np.float32)
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    out = {name: {"warm": [], "after_idle": []} for name in backends}
    logp = {}
    for name, b in backends.items():
        for _ in range(3):
            logp[name] = b.log_prob(grid)
    for i in range(repeats):
        for idle in ("warm", "after_idle"):
            for name, b in backends.items():
                if idle == "after_idle":
                    time.sleep(0.2)
                x = grid * (1 + 0.01 * (i % 5 + 1))
                start = time.perf_counter()
                b.log_prob(x)
                out[name][idle].append((time.perf_counter() - start) * 1000)
    res = {"model": path, "max_abs_logp_difference": float(np.max(np.abs(logp["unrolled"]
                                                                         - logp["kernel"])))}
    for idle in ("warm", "after_idle"):
        a, b = (statistics.median(out[n][idle]) for n in ("unrolled", "kernel"))
        res[f"{idle}_unrolled_ms"], res[f"{idle}_kernel_ms"] = round(a, 1), round(b, 1)
        res[f"{idle}_speedup"] = round(b / a, 2)
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", default=[os.path.join(ROOT, "saved_models", m, "flow.keras")
                                                 for m in ("moons", "rings")])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    results = [measure(m, args.repeats) for m in args.models]
    for r in results:
        print(json.dumps(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load_average_1min": os.getloadavg()[0], "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
