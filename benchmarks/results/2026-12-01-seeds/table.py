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
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.dirname(HERE)
sys.path.insert(0, RESULTS)
from seed_table import print_family_table  # noqa: E402

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


print_family_table(CELLS, gaps, gaps)
