"""What `fit`'s fused Adam update (`Flow.fused_adam`, `VariationalFlow.fused_adam`)
saves against Keras' own `apply_gradients`, in fresh processes, one after the
other (the two settings interleaved, so the machine's drift hits both).

Three measurements, each with XLA's default optimisation:
  * `update`: tracing, compiling and running once a `tf.function` that applies
    all-ones gradients to a flow's weights (5-layer NSF on 2-D data, 30 weights;
    32 planar layers, 96 weights), Keras' update against the fused kernel;
  * `fit`: the first `fit` call of a 3-layer NSF (hidden 32, 32) on 2,048
    moons rows, batch 256, one step: tracing, compiling and the step;
  * `vi`: the first `VariationalFlow.fit` call (the target check and one
    step) of 32 planar layers on `u1`, batch 512.

    .venv/bin/python benchmarks/fused_adam.py --repeats 3 \
        --out benchmarks/results/2026-12-05-fused-adam.json
"""

import argparse
import json
import statistics
import sys

from fresh import interleaved_results

CASES = (("update", "nsf"), ("update", "planar"), ("fit", "nsf"), ("vi", "planar"))


def _flow(model):
    import kerasflows
    if model == "nsf":
        return kerasflows.models.NSF(2)
    return kerasflows.Flow([kerasflows.layers.Planar() for _ in range(32)], event_dim=2)


def child(what, model, fused):
    """One measurement in this process; prints its seconds."""
    import time
    import keras
    import tensorflow as tf
    import kerasflows
    from kerasflows.packed_adam import fused_adam_apply, fused_adam_slots
    keras.utils.set_random_seed(0)
    if what == "update":
        flow = _flow(model)
        flow.sample(4)                                   # built, weights made
        variables = flow.trainable_variables
        opt = keras.optimizers.Adam(1e-3)
        opt.build(variables)

        def step():
            grads = [tf.ones_like(v) for v in variables]
            if fused:
                fused_adam_apply(opt, grads, variables, fused_adam_slots(opt, variables))
            else:
                opt.apply(grads, variables)
            return tf.constant(0.0)
        start = time.perf_counter()
        tf.function(step, autograph=False, jit_compile=True)()
    elif what == "fit":
        x = kerasflows.datasets.load("moons", n=2048, seed=0)
        flow = kerasflows.models.NSF(2, num_layers=3, hidden_units=(32, 32))
        flow.fused_adam = fused
        flow.compile(optimizer=keras.optimizers.Adam(1e-3))
        start = time.perf_counter()
        flow.fit(x, batch_size=256, epochs=1, steps_per_epoch=1, verbose=0)
    else:
        vi = kerasflows.VariationalFlow(_flow(model), "u1", batch_size=512)
        vi.fused_adam = fused
        vi.compile(optimizer=keras.optimizers.Adam(1e-2))
        start = time.perf_counter()
        vi.fit(epochs=1, steps_per_epoch=1, verbose=0)
    print(json.dumps(time.perf_counter() - start))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1], argv[2], bool(int(argv[3])))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per cell")
    p.add_argument("--out", help="write the table as JSON here too")
    args = p.parse_args(argv)
    rows = []
    for what, model in CASES:
        times = interleaved_results(__file__, args.repeats,
                                    {"keras": (what, model, 0), "fused": (what, model, 1)})
        row = {"measure": what, "model": model, "keras_s": times["keras"],
               "fused_s": times["fused"], "median_keras_s": statistics.median(times["keras"]),
               "median_fused_s": statistics.median(times["fused"])}
        rows.append(row)
        print(f"{what:6s} {model:6s} median of {args.repeats}: Keras' update "
              f"{row['median_keras_s']:.2f} s, fused {row['median_fused_s']:.2f} s", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
