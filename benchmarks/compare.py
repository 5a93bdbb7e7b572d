#!/usr/bin/env python3
"""Runs kerasflows and its peers (zuko, TFP) in one run and tables the ratios ours/peer.

The jobs run through the shared harness (`../shared/bench/peers.py`, one
fresh subprocess per job, one job at a time) with our runners plugged in
(`benchmarks/kerasflows_plugin.py`), so both sides share the same data,
batches, protocol and measuring code. For each dataset and family the table
gives:

  * dNLL: our test NLL minus the best peer's of the family (nats; <= 0 meets
    the target),
  * train / density / sampling: our throughput over the fastest peer's of
    the family (train: median-step examples/s; target >= 1.5),
  * 1st step: our time to the end of the first optimizer step (target <= 3 s).

Families: MAF (zuko:maf, tfp:maf), NSF autoregressive (zuko:nsf), NSF
coupling (zuko:nsf_coupling, tfp:nsf_coupling), RealNVP (zuko:realnvp,
tfp:realnvp). Results go to `benchmarks/results/<date>.json` (the harness's
records plus the ratios) and `<date>.md` (ratio tables, then the harness's
full tables).

Examples (from the repository root, after `bash benchmarks/setup.sh`):

    .venv-bench/bin/python benchmarks/compare.py                 # full protocol
    .venv-bench/bin/python benchmarks/compare.py --families maf --datasets moons --steps 300
    .venv-bench/bin/python benchmarks/compare.py --render a.json b.json --out merged.json
"""

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_BENCH = os.path.normpath(os.path.join(ROOT, "..", "shared", "bench"))
PLUGIN = os.path.join(HERE, "kerasflows_plugin.py")
DATASETS = ["checkerboard", "eight_gaussians", "moons", "rings", "pinwheel", "two_spirals",
            "digits"]

#: family -> (our runner, the peers it is compared with)
FAMILIES = {
    "maf": ("kerasflows:maf", ["zuko:maf", "tfp:maf"]),
    "nsf": ("kerasflows:nsf", ["zuko:nsf"]),
    "nsf_coupling": ("kerasflows:nsf_coupling", ["zuko:nsf_coupling", "tfp:nsf_coupling"]),
    "realnvp": ("kerasflows:realnvp", ["zuko:realnvp", "tfp:realnvp"]),
}
SPEEDS = (("train", "train_ex_per_s_median"), ("density", "density_pts_per_s"),
          ("sampling", "samples_per_s"))


def parse_list(text, allowed, what):
    """Splits a comma list and checks every item is in `allowed`."""
    items = [t for t in text.split(",") if t]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise SystemExit(f"compare.py: error: unknown {what} {bad or text!r}; "
                         f"expected a comma list from {list(allowed)}")
    return items


def job_models(families, peer_libs=("zuko", "tfp")):
    """Runner keys in run order: for each family ours, then its peers from `peer_libs`."""
    keys = []
    for fam in families:
        ours, peers = FAMILIES[fam]
        peers = [k for k in peers if k.split(":")[0] in peer_libs]
        keys += [k for k in [ours, *peers] if k not in keys]
    return keys


def _ok(rec):
    return rec is not None and rec.get("status") == "ok"


def ratio_rows(results):
    """One row per (dataset, family) that has our result: the ratios ours / peer."""
    cell = {(r["dataset"], r["key"]): r for r in results}
    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    rows = []
    for d in datasets:
        for fam, (ours_key, peer_keys) in FAMILIES.items():
            ours = cell.get((d, ours_key))
            if ours is None:
                continue
            peers = [cell[(d, k)] for k in peer_keys if _ok(cell.get((d, k)))]
            row = dict(dataset=d, family=fam, status=ours.get("status"),
                       ours_nll=ours.get("test_nll"), ours_gap=ours.get("gap_nats"),
                       first_step_s=ours.get("time_to_first_step_s"),
                       loadavg_start=(ours.get("loadavg_start") or [None])[0],
                       foreign_cores=ours.get("foreign_cores_during_train"),
                       peers_failed=[k for k in peer_keys if (d, k) in cell
                                     and not _ok(cell[(d, k)])])
            if peers and _ok(ours):
                best = min(peers, key=lambda r: r["test_nll"])
                row.update(best_peer=best["key"], best_peer_nll=best["test_nll"],
                           best_peer_gap=best.get("gap_nats"),
                           d_nll=ours["test_nll"] - best["test_nll"])
                for name, field in SPEEDS:
                    have = [r for r in peers if r.get(field)]
                    if have and ours.get(field):
                        fast = max(have, key=lambda r: r[field])
                        row[f"{name}_peer"] = fast["key"]
                        row[f"{name}_ratio"] = ours[field] / fast[field]
                row["peer_first_step_s"] = min(r["time_to_first_step_s"] for r in peers
                                               if r.get("time_to_first_step_s") is not None)
            rows.append(row)
    return rows


def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def _mark(ok):
    return "" if ok is None else (" ok" if ok else " MISS")


def ratio_table(rows):
    """Markdown: one line per (dataset, family), targets marked ok / MISS."""
    out = ["| dataset | family | ours NLL (gap) | best peer: NLL (gap) | dNLL | "
           "train x (fastest peer) | density x | sampling x | 1st step s (peer) | "
           "load / foreign cores |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] != "ok" or "d_nll" not in r:
            what = (r["status"] if r["status"] != "ok" else
                    f"{r['ours_nll']:.3f} (no peer of the family ran)")
            out.append(f"| {r['dataset']} | {r['family']} | {what} | | | | | | | "
                       f"failed peers: {', '.join(r['peers_failed']) or '-'} |")
            continue
        gap = lambda n, g: f"{n:.3f}" + (f" ({g:.3f})" if g is not None else "")
        speeds = []
        for name, _ in SPEEDS:
            x = r.get(f"{name}_ratio")
            text = "-" if x is None else f"{x:.2f}{_mark(x >= 1.5)}"
            speeds.append(text + (f" ({r['train_peer']})" if name == "train" and x else ""))
        first = r["first_step_s"]
        out.append("| " + " | ".join([
            r["dataset"], r["family"], gap(r["ours_nll"], r["ours_gap"]),
            f"{r['best_peer']}: " + gap(r["best_peer_nll"], r["best_peer_gap"]),
            f"{r['d_nll']:+.3f}{_mark(r['d_nll'] <= 0)}", *speeds,
            f"{_f(first, '.2f')}{_mark(first is not None and first <= 3.0)} "
            f"({_f(r.get('peer_first_step_s'), '.2f')})",
            f"{_f(r['loadavg_start'], '.1f')} / {_f(r['foreign_cores'], '.2f')}"]) + " |")
    return "\n".join(out)


def summary_table(rows):
    """Markdown: per family, median ratio over datasets and how many meet each target."""
    import numpy as np
    out = ["| family | datasets | dNLL <= 0 | median dNLL | median train x | median density x "
           "| median sampling x | median 1st step s |", "|---|---|---|---|---|---|---|---|"]
    for fam in FAMILIES:
        rs = [r for r in rows if r["family"] == fam and "d_nll" in r]
        if not rs:
            continue
        med = lambda k: _f(float(np.median([r[k] for r in rs if r.get(k) is not None]))
                           if any(r.get(k) is not None for r in rs) else None, ".2f")
        met = sum(r["d_nll"] <= 0 for r in rs)
        out.append(f"| {fam} | {len(rs)} | {met}/{len(rs)} | "
                   f"{float(np.median([r['d_nll'] for r in rs])):+.3f} | {med('train_ratio')} | "
                   f"{med('density_ratio')} | {med('sampling_ratio')} | {med('first_step_s')} |")
    return "\n".join(out)


def nll_table(rows):
    """Markdown: test NLL only, ours against every peer of the family in `rows`."""
    out = ["| dataset | family | ours NLL (gap) | best peer: NLL (gap) | dNLL |",
           "|---|---|---|---|---|"]
    for r in rows:
        if "d_nll" not in r:
            continue
        gap = lambda n, g: f"{n:.3f}" + (f" ({g:.3f})" if g is not None else "")
        out.append(f"| {r['dataset']} | {r['family']} | {gap(r['ours_nll'], r['ours_gap'])} | "
                   f"{r['best_peer']}: {gap(r['best_peer_nll'], r['best_peer_gap'])} | "
                   f"{r['d_nll']:+.3f}{_mark(r['d_nll'] <= 0)} |")
    return "\n".join(out)


def reference_section(data, reference):
    """Our NLLs against a stored peers run (peer NLLs are deterministic: same data,
    batches and seed give bit-identical numbers), for peers not run alongside ours."""
    ref = json.load(open(reference))
    ours = [r for r in data["results"] if r["key"].startswith("kerasflows:")]
    ran = {(r["dataset"], r["key"]) for r in data["results"]}
    peers = [r for r in ref["results"] if (r["dataset"], r["key"]) not in ran]
    rows = ratio_rows([r for r in data["results"] if (r["dataset"], r["key"])] + peers)
    return ["## Test NLL against the stored peers run", "",
            f"Peers not run here are taken from `{os.path.basename(reference)}` "
            f"({ref['meta']['date']}), measured in another environment: NLL does not "
            "depend on timing, but a peer's NLL can differ slightly between "
            "installations, so only the NLL column is given.", "", nll_table(rows), ""] if ours else []


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def render(data, bench, out, reference=None):
    """Adds the ratios to `data`, writes `out` (.json) and the .md beside it."""
    sys.path.insert(0, bench)
    import peers
    rows = ratio_rows(data["results"])
    data["ratios"] = rows
    meta = data["meta"]
    host = meta.get("host", {})
    md = [f"# kerasflows vs peers, {meta['date']}", "",
          f"Machine: {host.get('cpus')} CPUs ({cpu_model()}), {host.get('platform')}, "
          f"Python {host.get('python')}. Command: `{meta.get('command', '')}`. "
          f"Total wall time {meta.get('total_wall_s', 0) / 60:.1f} min.", "",
          "Ratios are ours / peer from this run. dNLL = our test NLL minus the best "
          "peer's of the family (nats, target <= 0); train = median-step examples/s "
          "over the fastest peer's; density = points/s on the 256x256 grid; sampling = "
          "samples/s (targets >= 1.5); 1st step = seconds to the end of our first "
          "optimizer step (target <= 3 s; the fastest peer's in brackets). 'load' is the "
          "1-minute load average when our job started, 'foreign cores' the CPU other "
          "processes used during our training.", "",
          "## Per family (medians over datasets)", "", summary_table(rows), "",
          "## Per dataset", "", ratio_table(rows), "",
          *(reference_section(data, reference) if reference else []),
          "## All jobs (harness tables)", "",
          peers.markdown(data["results"], meta)]
    with open(out, "w") as f:
        json.dump(data, f, indent=1)
    with open(os.path.splitext(out)[0] + ".md", "w") as f:
        f.write("\n".join(md))
    print(summary_table(rows))
    print(f"wrote {out} and {os.path.splitext(out)[0]}.md")


def merge(paths):
    """Concatenates results files; a later (dataset, key) replaces an earlier one."""
    datas = [json.load(open(p)) for p in paths]
    cell = {}
    for d in datas:
        for r in d["results"]:
            cell[(r["dataset"], r["key"])] = r
    meta = dict(datas[-1]["meta"])
    meta["total_wall_s"] = sum(d["meta"].get("total_wall_s", 0) for d in datas)
    meta["command"] = " + ".join(d["meta"].get("command", "") for d in datas)
    return dict(meta=meta, results=list(cell.values()))


def build_parser():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join(FAMILIES),
                    help="comma list from: " + ",".join(FAMILIES))
    ap.add_argument("--datasets", default=",".join(DATASETS),
                    help="comma list from: " + ",".join(DATASETS))
    for opt in ("--steps", "--steps-digits", "--eval-every", "--sample-n"):
        ap.add_argument(opt, type=int, help="passed to peers.py (overrides the protocol)")
    ap.add_argument("--peer-libs", default="zuko,tfp",
                    help="peer libraries to run (comma list from: zuko,tfp; '' = ours only)")
    ap.add_argument("--bench", default=DEFAULT_BENCH, help="the shared bench folder (peers.py)")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter with kerasflows, torch and zuko (.venv-bench)")
    ap.add_argument("--out", help="results JSON (default benchmarks/results/<date>.json; "
                    "with --render, the first JSON's name with -rendered)")
    ap.add_argument("--reference", metavar="PEERS_JSON",
                    help="also table our test NLL against this stored peers results file")
    ap.add_argument("--render", nargs="+", metavar="JSON",
                    help="only (re)write the tables from results JSON files (merged in order)")
    return ap


def main(argv=None):
    a = build_parser().parse_args(argv)
    if not os.path.exists(os.path.join(a.bench, "peers.py")):
        raise SystemExit(f"compare.py: error: no peers.py in --bench {a.bench!r}")
    date = dt.datetime.now().strftime("%Y-%m-%d")
    if a.render and not a.out:
        # not the default of a run: today's results would be written over
        a.out = os.path.splitext(a.render[0])[0] + "-rendered.json"
    out = os.path.abspath(a.out or os.path.join(HERE, "results", f"{date}.json"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if a.render:
        render(merge(a.render), a.bench, out, a.reference)
        return 0
    families = parse_list(a.families, FAMILIES, "family")
    datasets = parse_list(a.datasets, DATASETS, "dataset")
    peer_libs = parse_list(a.peer_libs, ("zuko", "tfp"), "peer library") if a.peer_libs else []
    models = job_models(families, peer_libs)
    if os.sep in a.python:      # peers.py runs in --bench: a relative path is read there
        a.python = os.path.abspath(a.python)
    cmd = [a.python, "peers.py", "--plugin", PLUGIN, "--python", a.python,
           "--models", ",".join(models), "--datasets", ",".join(datasets), "--out", out,
           "--logs", os.path.join(tempfile.gettempdir(), "kerasflows-compare-logs")]
    for opt in ("steps", "steps_digits", "eval_every", "sample_n"):
        if getattr(a, opt) is not None:
            cmd += ["--" + opt.replace("_", "-"), str(getattr(a, opt))]
    print(" ".join(cmd), flush=True)
    code = subprocess.call(cmd, cwd=a.bench)
    if code != 0 or not os.path.exists(out):
        print(f"compare.py: error: peers.py exited with {code}", file=sys.stderr)
        return 2
    with open(out) as f:
        results = json.load(f)
    render(results, a.bench, out, a.reference)
    # peers.py records a job's error ("error: ...") and exits 0 (a peer's divergence,
    # also in `status`, is a result)
    failed = [r for r in results.get("results", []) if r.get("status", "").startswith("error")]
    if failed:
        print(f"compare.py: error: {len(failed)} of {len(results.get('results', []))} jobs "
              f"failed (the first: {failed[0].get('key')} on {failed[0].get('dataset')}: "
              f"{failed[0].get('status')}); see {out}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
