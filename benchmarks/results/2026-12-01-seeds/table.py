"""The RealNVP and spline cells' NLL gap over seeds 0-9, ours and zuko's.

Seed 0 is the full run `../2026-12-01-session23-full.json`; seeds 1-2 are
`../2026-11-30-seed-spread/{realnvp,nsf}-{1,2}.json` and
`realnvp-rings-{1,2}.json` here; seeds 3-9 `realnvp-<seed>.json` and
`nsf-<seed>.json` here (`run.sh`). zuko:nsf is the peer of both spline
families (on 2-D data zuko's NSF and its spline coupling are one model).
Prints the markdown table of this folder's README.
"""
import glob
import json
import os
import statistics as st
from math import comb

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.dirname(HERE)
FILES = ([os.path.join(RESULTS, "2026-12-01-session23-full.json")]
         + sorted(glob.glob(os.path.join(RESULTS, "2026-11-30-seed-spread", "realnvp-*.json")))
         + sorted(glob.glob(os.path.join(RESULTS, "2026-11-30-seed-spread", "nsf-*.json")))
         + sorted(glob.glob(os.path.join(HERE, "*.json"))))
CELLS = ([("RealNVP", "kerasflows:realnvp", "zuko:realnvp", ds)
          for ds in ("checkerboard", "moons", "rings")]
         + [(fam, key, "zuko:nsf", ds)
            for fam, key in (("NSF autoregressive", "kerasflows:nsf"),
                             ("NSF coupling", "kerasflows:nsf_coupling"))
            for ds in ("moons", "rings")])

gaps = {}   # (key, dataset) -> {seed: gap}
for f in FILES:
    for r in json.load(open(f))["results"]:
        if r.get("status") == "ok" and r.get("gap_nats") is not None:
            gaps.setdefault((r["key"], r["dataset"]), {})[r["seed"]] = r["gap_nats"]


def sign_test_p(wins, n):
    """Two-sided sign-test p-value of `wins` out of `n` under 1/2."""
    k = min(wins, n - wins)
    return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n)


print("| family | dataset | seeds | ours: median (min-max) | zuko: median (min-max) | "
      "median of paired differences | ours lower on | sign test p | mean difference +- s.e. |")
print("|---|---|---|---|---|---|---|---|---|")
for fam, key, peer_key, ds in CELLS:
    ours, peer = gaps.get((key, ds), {}), gaps.get((peer_key, ds), {})
    seeds = sorted(set(ours) & set(peer))
    if not seeds:
        continue
    d = [ours[s] - peer[s] for s in seeds]
    wins = sum(x < 0 for x in d)
    se = st.stdev(d) / len(d) ** 0.5 if len(d) > 1 else float("nan")

    def fmt(g):
        v = [g[s] for s in seeds]
        return f"{st.median(v):.3f} ({min(v):.3f}-{max(v):.3f})"

    print(f"| {fam} | {ds} | {seeds[0]}-{seeds[-1]} ({len(seeds)}) | {fmt(ours)} | {fmt(peer)} | "
          f"{st.median(d):+.3f} | {wins}/{len(seeds)} | {sign_test_p(wins, len(seeds)):.2f} | "
          f"{st.mean(d):+.3f} +- {se:.3f} |")
