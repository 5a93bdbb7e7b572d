#!/usr/bin/env python3
"""Memory: the resident memory our flows and the peers' take for the same work.

    .venv-bench/bin/python benchmarks/memory.py [--families maf,nsf,nsf_coupling,realnvp]
        [--datasets moons,digits] [--peer-libs zuko,tfp] [--steps 300]
        [--steps-digits 150] [--repeats 3] [--json out.json]

Each (library:model, dataset) job runs in a fresh process of its own, one
after another, ours first in each family, through the shared harness's
runners (`../shared/bench/peers.py`, ours plugged in by
`benchmarks/kerasflows_plugin.py`), so both sides build the same models
under the protocol (5 transforms, hidden [64, 64], 8 bins, batch 512, 2
threads) and are fed the same batches. The job goes through these phases,
in order:

  start     Python, numpy and the harness, before any framework is imported
  import    the runner made (its library imported: TensorFlow, or torch)
  build     the model and optimizer built (`runner.build`)
  train     `--steps` optimizer steps on the protocol's batches (2-D: 300,
            past our step's 100 graph steps and the switch to XLA; digits: 150)
  density   log-density of the protocol's 65,536 density points, one call
            (the 256x256 grid; digits: test rows tiled)
  sampling  the harness's 1,000-sample warm-up, then its 10^5 samples
            (digits: 10^4) in one call

A thread reads the process's resident memory from `/proc/self/statm`
every millisecond, all of it ("rss", what `top` shows) and its anonymous
part ("anon": all but the pages mapped from the libraries' files, which are
shared between processes and dropped under memory pressure; TensorFlow's
import maps about 400 MB of them, torch's about 75 MB); each phase records
the highest values seen during it and the values at its end. The kernel's
own peak resident set (`ru_maxrss`) is stored beside the polled one, as a
check on a spike shorter than a millisecond.

Printed per dataset and family, for ours and each peer, with the ratio
ours / the family's lowest peer: the peak resident set over the whole job,
the peak anonymous memory, and that peak above the anonymous memory held
once the library was imported (the work's own memory: model, optimizer
state, compiled code, buffers); then every job's phases. Each job runs
`--repeats` times (3), each in a fresh process, and every figure is the
median over them: a library's allocator does not always take the same
memory for the same work (zuko's MAF sampling peaked at 404 MB in one
process and 965 MB in another). `--json out.json` writes the records and the
tables (`out.md` beside it).
"""

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "bench"))
PLUGIN = os.path.join(HERE, "kerasflows_plugin.py")
sys.path.insert(0, HERE)
from compare import FAMILIES, cpu_model, job_models, parse_list  # noqa: E402

PHASES = ("start", "import", "build", "train", "density", "sampling")
DEFAULT_DATASETS = ("moons", "digits")
MB = 2 ** 20


class ResidentMemory:
    """The process's resident memory, polled on a thread: `phase(name)` records the
    highest values since the previous phase and the values now.

    Two figures (bytes): "rss", every resident page (what `top` shows), and
    "anon", the resident pages that are not mapped from a file: the process's
    own data (tensors, weights, allocator pools, compiled code). The rest of
    the resident set is the libraries' code and data read from their files,
    shared between processes and given back under memory pressure without
    being written anywhere (the figures come from `/proc/self/statm`:
    resident, and resident less its file-backed and shared pages).
    """

    KINDS = ("rss", "anon")

    def __init__(self, interval=1e-3):
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._statm = os.open("/proc/self/statm", os.O_RDONLY)
        self._interval = interval
        self._stop = threading.Event()
        self.peak = self.now()
        self.phases = {}
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def now(self):
        fields = os.pread(self._statm, 256, 0).split()      # no shared file offset
        resident, shared = int(fields[1]), int(fields[2])
        return {"rss": resident * self._page, "anon": (resident - shared) * self._page}

    def _poll(self):
        while not self._stop.is_set():
            now = self.now()
            self.peak = {k: max(self.peak[k], now[k]) for k in self.KINDS}
            time.sleep(self._interval)

    def phase(self, name):
        now = self.now()
        self.phases[name] = {"peak": {k: max(self.peak[k], now[k]) for k in self.KINDS},
                             "end": now}
        self.peak = now

    def close(self):
        self._stop.set()
        self._thread.join()
        os.close(self._statm)


def child(key, dataset, steps, sample_n):
    """One job in this process; returns its record."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    sys.path.insert(0, BENCH)
    import peers
    memory = ResidentMemory()
    memory.phase("start")
    peers.load_plugin(PLUGIN)
    P = dict(peers.PROTOCOL)
    runner = peers.REGISTRY[key]()
    versions = runner.versions()
    memory.phase("import")
    x_train = peers.load_split(dataset, "train")
    x_test = peers.load_split(dataset, "test")
    runner.build(x_train.shape[1], P)
    memory.phase("build")
    schedule = peers.batch_schedule(len(x_train), P["batch"], steps, P["seed"])
    losses = [runner.train_step(x_train[batch]) for batch in schedule]
    memory.phase("train")
    points = peers.eval_points(dataset, P, x_test)
    log_p = runner.log_prob_batched(points, P["eval_batch"])
    memory.phase("density")
    runner.sample(1000)
    samples = np.asarray(runner.sample(sample_n))
    memory.phase("sampling")
    memory.close()
    peak = {k: max(p["peak"][k] for p in memory.phases.values()) for k in memory.KINDS}
    return {"key": key, "dataset": dataset, "library": runner.library, "model": runner.model,
            "versions": versions, "steps": steps, "sample_n": sample_n,
            "points": int(len(points)), "final_loss": float(losses[-1]),
            "finite": bool(np.isfinite(log_p).all() and np.isfinite(samples).all()),
            "phases": memory.phases, "peak": peak,
            # the kernel's own peak resident set (KiB on Linux), against a missed spike
            "kernel_peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def run_job(key, dataset, steps, sample_n):
    """Runs one job in a fresh process; returns its record (or an error record)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", key, dataset,
           "--steps", str(steps), "--sample-n", str(sample_n)]
    env = dict(os.environ, OMP_NUM_THREADS="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return {"key": key, "dataset": dataset, "error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def median_record(records):
    """The first record with every byte figure replaced by the median over `records`."""
    out = json.loads(json.dumps(records[0]))
    med = lambda get: statistics.median(get(r) for r in records)
    out["kernel_peak_rss"] = med(lambda r: r["kernel_peak_rss"])
    for kind in ResidentMemory.KINDS:
        out["peak"][kind] = med(lambda r: r["peak"][kind])
        for name in PHASES:
            for at in ("peak", "end"):
                out["phases"][name][at][kind] = med(lambda r: r["phases"][name][at][kind])
    out["repeats"] = len(records)
    return out


#: The figures compared, each `(name, description, fn(record) -> bytes)`.
MEASURES = (
    ("peak_rss", "peak resident set (MB)", lambda r: r["peak"]["rss"]),
    ("peak_anon", "peak anonymous memory (MB)", lambda r: r["peak"]["anon"]),
    ("work_anon", "peak anonymous memory above the import (MB)",
     lambda r: r["peak"]["anon"] - r["phases"]["import"]["end"]["anon"]),
)


def ratio_rows(results, families, datasets):
    """One row per (dataset, family): each measure for ours and the family's peers,
    and ours over the lowest peer's."""
    by_key = {(r["key"], r["dataset"]): r for r in results if "error" not in r}
    rows = []
    for dataset in datasets:
        for family in families:
            ours_key, peer_keys = FAMILIES[family]
            ours = by_key.get((ours_key, dataset))
            here = [by_key[(k, dataset)] for k in peer_keys if (k, dataset) in by_key]
            if ours is None or not here:
                continue
            row = {"dataset": dataset, "family": family}
            for name, _, fn in MEASURES:
                lowest = min(here, key=fn)
                row[name] = {"ours_mb": fn(ours) / MB,
                             "peers_mb": {r["key"]: fn(r) / MB for r in here},
                             "ratio": fn(ours) / max(fn(lowest), 1), "lowest": lowest["key"]}
            rows.append(row)
    return rows


def table(rows, measure):
    """Markdown: one measure, ours against each peer, and the ratio to the lowest."""
    libs = sorted({k.split(":")[0] for r in rows for k in r[measure]["peers_mb"]})
    lines = [f"| dataset | family | ours | {' | '.join(libs)} | ours / lowest |",
             "|---|---|---|" + "---|" * len(libs) + "---|"]
    for r in rows:
        m = r[measure]
        peers = {k.split(":")[0]: v for k, v in m["peers_mb"].items()}
        cells = " | ".join(f"{peers[lib]:.0f}" if lib in peers else "-" for lib in libs)
        lines.append(f"| {r['dataset']} | {r['family']} | {m['ours_mb']:.0f} | {cells} | "
                     f"{m['ratio']:.2f} |")
    return "\n".join(lines)


def phase_table(results, kind):
    """Markdown: each job's peak and end of every phase, one kind of memory (MB)."""
    lines = ["| job | dataset | " + " | ".join(PHASES) + " | kernel peak RSS |",
             "|---|---|" + "---|" * (len(PHASES) + 1)]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['key']} | {r['dataset']} | {r['error']} |")
            continue
        cells = " | ".join(f"{r['phases'][p]['peak'][kind] / MB:.0f} / "
                           f"{r['phases'][p]['end'][kind] / MB:.0f}" for p in PHASES)
        lines.append(f"| {r['key']} | {r['dataset']} | {cells} | "
                     f"{r['kernel_peak_rss'] / MB:.0f} |")
    return "\n".join(lines)


def report(results, rows):
    """The tables as markdown text."""
    parts = []
    for name, description, _ in MEASURES:
        parts += [f"{description}:", "", table(rows, name), ""]
    for kind in ResidentMemory.KINDS:
        parts += [f"Each phase's peak / end, {kind} (MB):", "", phase_table(results, kind), ""]
    return "\n".join(parts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join(FAMILIES),
                    help="comma list from %(default)s")
    ap.add_argument("--datasets", default=",".join(DEFAULT_DATASETS),
                    help="comma list of the harness's datasets (default: %(default)s)")
    ap.add_argument("--peer-libs", default="zuko,tfp", help="comma list from zuko, tfp")
    ap.add_argument("--steps", type=int, default=300, help="train steps on 2-D sets")
    ap.add_argument("--steps-digits", type=int, default=150, help="train steps on digits")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs of each job (fresh processes); the median is reported")
    ap.add_argument("--json", help="write the records and the table here")
    ap.add_argument("--child", nargs=2, metavar=("KEY", "DATASET"), help=argparse.SUPPRESS)
    ap.add_argument("--sample-n", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(*a.child, a.steps, a.sample_n)))
        return 0
    for name in ("steps", "steps_digits", "repeats"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1; received {getattr(a, name)}")
    sys.path.insert(0, BENCH)
    import peers
    families = parse_list(a.families, FAMILIES, "families")
    datasets = parse_list(a.datasets, peers.ALL_DATASETS, "datasets")
    libs = parse_list(a.peer_libs, ("zuko", "tfp"), "peer libraries")
    started = time.time()
    results = []
    for dataset in datasets:
        digits = dataset == "digits"
        steps = a.steps_digits if digits else a.steps
        sample_n = peers.PROTOCOL["sample_n_digits" if digits else "sample_n"]
        for key in job_models(families, libs):
            records = [run_job(key, dataset, steps, sample_n) for _ in range(a.repeats)]
            bad = [r for r in records if "error" in r]
            rec = bad[0] if bad else median_record(records)
            results.append(rec)
            shown = rec.get("error") or "  ".join(
                f"{name} {fn(rec) / MB:.0f} MB" for name, _, fn in MEASURES)
            print(f"{key:26s} {dataset:14s} {shown}", flush=True)
    rows = ratio_rows(results, families, datasets)
    text = report(results, rows)
    print()
    print(text)
    if a.json:
        meta = {"date": dt.datetime.now().isoformat(timespec="minutes"),
                "command": " ".join(["benchmarks/memory.py", *(argv or sys.argv[1:])]),
                "cpu": cpu_model(), "cpus": os.cpu_count(), "platform": platform.platform(),
                "python": platform.python_version(), "wall_s": time.time() - started}
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "results": results, "rows": rows}, f, indent=1)
        with open(os.path.splitext(a.json)[0] + ".md", "w") as f:
            f.write(f"# Memory, {meta['date']}\n\n{meta['cpus']} CPUs ({meta['cpu']}), "
                    f"{meta['platform']}, Python {meta['python']}. "
                    f"Command: `{meta['command']}`.\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
