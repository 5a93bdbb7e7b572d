"""Runs one of our benchmark jobs several times, each in a fresh process, and
shows whether the runs agree: the shared harness's `run_job` with our plugin
(`benchmarks/kerasflows_plugin.py`, so `background_compile=100` unless
KF_GRAPH_STEPS says otherwise), printing each run's test gap and NLL to the
last digit and its median training step.

    .venv-bench/bin/python benchmarks/repeat_job.py kerasflows:maf two_spirals --runs 2
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN = os.path.join(HERE, "kerasflows_plugin.py")


def _one(key, dataset, bench, steps):
    sys.path.insert(0, bench)
    import peers
    P = dict(peers.PROTOCOL)
    if steps:
        P["steps"] = P["steps_digits"] = steps
    rec = peers.run_job(key, dataset, P, plugins=[PLUGIN])
    print(json.dumps({k: rec.get(k) for k in ("gap_nats", "test_nll", "step_ms_p50",
                                              "train_ex_per_s_median", "loss_last100_mean")}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("key", help="our runner, e.g. kerasflows:maf")
    ap.add_argument("dataset", help="e.g. two_spirals")
    ap.add_argument("--runs", type=int, default=2, help="fresh processes (default 2)")
    ap.add_argument("--steps", type=int, default=0, help="training steps (default: the protocol's)")
    ap.add_argument("--bench", default=os.path.join(HERE, "..", "..", "shared", "bench"),
                    help="the shared harness folder (default ../shared/bench)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    bench = os.path.abspath(a.bench)
    if a.one:
        return _one(a.key, a.dataset, bench, a.steps)
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONHASHSEED="0",
               TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    records = []
    for i in range(a.runs):
        done = subprocess.run([sys.executable, os.path.abspath(__file__), a.key, a.dataset,
                               "--one", "--steps", str(a.steps), "--bench", bench],
                              env=env, capture_output=True, text=True)
        if done.returncode != 0:        # the child's own error: a bad key or dataset
            sys.stderr.write(done.stderr[-3000:])
            return f"repeat_job.py: error: run {i + 1} failed (exit status {done.returncode})"
        out = done.stdout
        rec = json.loads(out.strip().splitlines()[-1])
        records.append(rec)
        # the harness gives no median step for a run of warm-up + 10 steps or fewer
        step = rec.get("step_ms_p50")
        print(f"run {i + 1}: gap {rec['gap_nats']!r} test NLL {rec['test_nll']!r} "
              f"median step {'-' if step is None else f'{step:.3f}'} ms", flush=True)
    same = all(r["test_nll"] == records[0]["test_nll"] for r in records)
    print("the runs' test NLLs are " + ("identical" if same else "different"))


if __name__ == "__main__":
    sys.exit(main())
