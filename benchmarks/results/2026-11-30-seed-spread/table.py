"""Seed spread of the NLL cells that miss at seed 0: median over seeds 0-2."""
import collections, glob, json, os, statistics as st
HERE = os.path.dirname(os.path.abspath(__file__))
cells = collections.defaultdict(dict)   # (dataset, family) -> {key: {seed: gap}}
runs = {0: [os.path.join(HERE, "..", "2026-11-30-directions.json")]}
for f in sorted(glob.glob(os.path.join(HERE, "*-[12].json"))):
    runs.setdefault(int(f[-6]), []).append(f)
for seed, files in runs.items():
    for f in files:
        for r in json.load(open(f))["results"]:
            if r.get("status") != "ok" or r.get("gap_nats") is None:
                continue
            fam = r["key"].split(":")[1]
            fams = ["nsf", "nsf_coupling"] if r["key"] == "zuko:nsf" else [fam]
            for fm in fams:
                cells[(r["dataset"], fm)].setdefault(r["key"], {})[seed] = r["gap_nats"]
want = [("checkerboard", "maf"), ("moons", "maf"), ("pinwheel", "maf"),
        ("checkerboard", "realnvp"), ("moons", "realnvp"),
        ("moons", "nsf"), ("moons", "nsf_coupling"), ("rings", "nsf_coupling"), ("rings", "nsf")]
print("| dataset | family | ours: seed 0 / 1 / 2 (median) | zuko: seed 0 / 1 / 2 (median) | median ours - zuko | ours lower on seeds |")
print("|---|---|---|---|---|---|")
for ds, fam in want:
    c = cells[(ds, fam)]
    ours = c.get(f"kerasflows:{fam}", {})
    peer = c.get("zuko:" + fam, {})
    if fam == "nsf_coupling":
        peer = {**c.get("zuko:nsf_coupling", {}), **{k: v for k, v in c.get("zuko:nsf", {}).items() if k != 0}}
    if fam == "nsf":
        peer = c.get("zuko:nsf", {})
    seeds = sorted(set(ours) & set(peer))
    fmt = lambda d: " / ".join(f"{d[s]:.3f}" for s in sorted(d)) + f" ({st.median(d.values()):.3f})"
    if not seeds:
        print(ds, fam, ours, peer); continue
    wins = sum(ours[s] < peer[s] for s in seeds)
    print(f"| {ds} | {fam} | {fmt(ours)} | {fmt(peer)} | {st.median(ours.values()) - st.median(peer.values()):+.3f} | {wins}/{len(seeds)} |")
