"""First trace of a user's own `tf.function` (AutoGraph on, TensorFlow's default)
around a flow, with kerasflows' graph entry points marked for AutoGraph to
call as written (`kerasflows.autograph_free`) and with the marks taken off,
in fresh processes, one after the other.

Two user functions: `log_prob` (`tf.function(lambda x: flow.log_prob(x))`)
and `step` (a hand-written train step: `tf.GradientTape` around
`-mean(flow.log_prob(x))`, then Adam), each traced once for a
`[None, D]` batch; the time includes AutoGraph's conversions, not a call.

    .venv/bin/python benchmarks/autograph_trace.py --repeats 3 \
        --out benchmarks/results/2026-12-05-autograph-trace.json
"""

import argparse
import json
import statistics
import sys

from fresh import interleaved_results


def child(family, dim, marks, what):
    """One trace in this process; prints its seconds."""
    import time
    import keras
    import tensorflow as tf
    import kerasflows
    if marks == "off":   # every marked function of kerasflows, unmarked
        import gc
        import inspect
        for obj in gc.get_objects():
            if (inspect.isfunction(obj) and (obj.__module__ or "").startswith("kerasflows")
                    and hasattr(obj, "autograph_info__")):
                del obj.autograph_info__
    flow = getattr(kerasflows.models, family)(dim, num_layers=3)
    flow.log_prob(tf.zeros([2, dim]))               # built, weights made
    if what == "log_prob":
        fn = tf.function(lambda x: flow.log_prob(x))
    else:
        opt = keras.optimizers.Adam(1e-3)
        opt.build(flow.trainable_variables)

        @tf.function
        def fn(x):
            with tf.GradientTape() as tape:
                loss = -tf.reduce_mean(flow.log_prob(x))
            opt.apply_gradients(zip(tape.gradient(loss, flow.trainable_variables),
                                    flow.trainable_variables))
            return loss
    start = time.perf_counter()
    fn.get_concrete_function(tf.TensorSpec([None, dim]))
    print(json.dumps(time.perf_counter() - start))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1], int(argv[2]), argv[3], argv[4])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default="RealNVP,NSF,MAF",
                   help="kerasflows.models constructors, comma-separated (default: %(default)s)")
    p.add_argument("--dim", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per cell")
    p.add_argument("--out", help="write the table as JSON here too")
    args = p.parse_args(argv)
    rows = []
    for family in args.families.split(","):
        for what in ("log_prob", "step"):
            times = interleaved_results(__file__, args.repeats,
                                        {m: (family, args.dim, m, what) for m in ("on", "off")})
            row = {"family": family, "dim": args.dim, "function": what,
                   "marked_s": times["on"], "unmarked_s": times["off"],
                   "median_marked_s": statistics.median(times["on"]),
                   "median_unmarked_s": statistics.median(times["off"])}
            rows.append(row)
            print(f"{family:8s} {what:8s} first trace, median of {args.repeats}: "
                  f"marked {row['median_marked_s']:.2f} s, unmarked "
                  f"{row['median_unmarked_s']:.2f} s "
                  f"({row['median_unmarked_s'] / row['median_marked_s']:.1f}x)", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
