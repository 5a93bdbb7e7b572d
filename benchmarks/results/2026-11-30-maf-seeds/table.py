"""MAF's NLL gap on checkerboard, moons and pinwheel over seeds 0-9, ours and zuko:maf.

Seed 0 is the full run `../2026-11-30-philox.json`, seeds 1-2
`../2026-11-30-seed-spread/maf-{1,2}.json`, seeds 3-9 `maf-<seed>.json`
here (`run.sh`). Prints the markdown table of this folder's README.
"""
import glob
import json
import os
import statistics as st

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.dirname(HERE)
files = {0: [os.path.join(RESULTS, "2026-11-30-philox.json")]}
for seed in (1, 2):
    files[seed] = [os.path.join(RESULTS, "2026-11-30-seed-spread", f"maf-{seed}.json")]
for f in glob.glob(os.path.join(HERE, "maf-*.json")):
    files[int(os.path.basename(f)[4:-5])] = [f]

gaps = {}   # (dataset, key) -> {seed: gap}
for seed, fs in files.items():
    for f in fs:
        for r in json.load(open(f))["results"]:
            if (r["key"] in ("kerasflows:maf", "zuko:maf") and r.get("status") == "ok"
                    and r.get("gap_nats") is not None):
                gaps.setdefault((r["dataset"], r["key"]), {})[seed] = r["gap_nats"]


def sign_test_p(wins, n):
    """Two-sided sign-test p-value of `wins` out of `n` under 1/2."""
    from math import comb
    k = min(wins, n - wins)
    return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n)


print("| dataset | seeds | ours: median (min-max) | zuko: median (min-max) | "
      "median of paired differences | ours lower on | sign test p | mean difference +- s.e. |")
print("|---|---|---|---|---|---|---|---|")
for ds in ("checkerboard", "moons", "pinwheel"):
    ours, peer = gaps.get((ds, "kerasflows:maf"), {}), gaps.get((ds, "zuko:maf"), {})
    seeds = sorted(set(ours) & set(peer))
    if not seeds:
        continue
    d = [ours[s] - peer[s] for s in seeds]
    wins = sum(x < 0 for x in d)
    se = st.stdev(d) / len(d) ** 0.5 if len(d) > 1 else float("nan")
    fmt = lambda g: (f"{st.median(g[s] for s in seeds):.3f} "
                     f"({min(g[s] for s in seeds):.3f}-{max(g[s] for s in seeds):.3f})")
    print(f"| {ds} | {seeds[0]}-{seeds[-1]} ({len(seeds)}) | {fmt(ours)} | {fmt(peer)} | "
          f"{st.median(d):+.3f} | {wins}/{len(seeds)} | {sign_test_p(wins, len(seeds)):.2f} | "
          f"{st.mean(d):+.3f} +- {se:.3f} |")
