"""What bounds 2-D sampling: our samplers and TFP's, with one and two threads.

    python benchmarks/sampling_bound.py [--families realnvp,nsf_coupling,maf]
                                        [--threads 1,2] [--n 100000] [--rounds 15]
                                        [--json out.json]

For each thread count (a fresh process each: TensorFlow's thread pools are
fixed at its first op), builds the peer benchmark's 2-D flows of each
family twice, ours through the plugin (`benchmarks/kerasflows_plugin.py`:
`eval_mode="xla"`) and TFP's stock one through the shared harness
(`../shared/bench/peers.py`), both untrained (sampling costs the same
whatever the weights), and times `sample(n)` of each, alternating call by
call after one warm-up call each (which compiles). Also times a probe of
the machine: ten `relu(h @ W + b)` layers of [8192, 64] x [64, 64] in one
XLA call, the shape of the conditioners' hidden layers.

Prints, per family and thread count: the median milliseconds of ours and
of TFP, their ratio, and for the coupling flows the conditioners' matmul
work (2 x rows x inputs x outputs for every kernel, each used once per row
per layer) as GFLOP/s; and the probe's GFLOP/s. A sampler at the probe's
rate is bound by its matrix products, and no change of ours short of fewer
products (`kerasflows.tabulate`) or lower precision makes it faster.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(HERE, "..", "..", "shared", "bench")
PEERS = {"realnvp": "tfp:realnvp", "nsf_coupling": "tfp:nsf_coupling", "maf": "tfp:maf"}
OURS = {"realnvp": "kerasflows:realnvp", "nsf_coupling": "kerasflows:nsf_coupling",
        "maf": "kerasflows:maf"}


def child(threads, families, n, rounds):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    sys.path.insert(0, BENCH)
    import peers
    peers.load_plugin(os.path.join(HERE, "kerasflows_plugin.py"))
    P = dict(peers.PROTOCOL, threads=threads)

    out = {"threads": threads, "families": {}}
    rows, width, layers = 8192, 64, 10
    h0 = tf.random.stateless_normal([rows, width], [0, 1])
    w = tf.random.stateless_normal([width, width], [0, 2]) * 0.1
    b = tf.zeros([width])

    @tf.function(jit_compile=True)
    def probe(h):
        for _ in range(layers):
            h = tf.nn.relu(h @ w + b)
        return h
    probe(h0).numpy()
    took = []
    for _ in range(rounds * 4):
        t = time.perf_counter()
        probe(h0).numpy()
        took.append(time.perf_counter() - t)
    out["probe_gflops"] = 2 * rows * width * width * layers / statistics.median(took) / 1e9

    for family in families:
        ours, peer = peers.REGISTRY[OURS[family]](), peers.REGISTRY[PEERS[family]]()
        ours.build(2, P)
        peer.build(2, P)
        flops = None
        if family != "maf":
            kernels = [v for v in ours.flow.trainable_variables if len(v.shape) == 2]
            flops = sum(2 * n * int(v.shape[0]) * int(v.shape[1]) for v in kernels)
        runners = {"ours": ours, "tfp": peer}
        times = {k: [] for k in runners}
        for r in runners.values():
            r.sample(n)
        for _ in range(rounds):
            for k, r in runners.items():
                t = time.perf_counter()
                r.sample(n)
                times[k].append(time.perf_counter() - t)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        out["families"][family] = dict(
            ours_ms=med["ours"], tfp_ms=med["tfp"], ratio=med["tfp"] / med["ours"],
            matmul_flop=flops,
            ours_gflops=None if flops is None else flops / med["ours"] / 1e6)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--families", default="realnvp,nsf_coupling,maf")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--json")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    families = [f for f in a.families.split(",") if f]
    for f in families:
        if f not in PEERS:
            ap.error(f"unknown family {f!r}; expected some of {', '.join(PEERS)}")
    if a.child:
        print(json.dumps(child(a.child, families, a.n, a.rounds)))
        return
    results = []
    for t in (int(x) for x in a.threads.split(",")):
        cmd = [sys.executable, __file__, "--child", str(t), "--families", a.families,
               "--n", str(a.n), "--rounds", str(a.rounds)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"sample({a.n:,}) of the 2-D flows, medians of {a.rounds} alternating calls")
    print("| threads | family | ours ms | TFP ms | TFP / ours | ours matmul GFLOP/s "
          "| probe GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        for f, v in r["families"].items():
            g = "-" if v["ours_gflops"] is None else f"{v['ours_gflops']:.0f}"
            print(f"| {r['threads']} | {f} | {v['ours_ms']:.1f} | {v['tfp_ms']:.1f} | "
                  f"{v['ratio']:.2f} | {g} | {r['probe_gflops']:.0f} |")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"n": a.n, "rounds": a.rounds, "results": results,
                       "loadavg": os.getloadavg()}, fh, indent=1)


if __name__ == "__main__":
    main()
