"""Every 2-D cell whose seed-0 NLL trails the family's best peer, over seeds 0-9,
ours at the current library and zuko's.

Ours: seed 0 from the full run `../2026-12-02-session29-full.json`, seeds 1-9
from `<family>-<seed>.json` here (`run.sh`). zuko's gaps at each seed come from
every earlier result file under `..` that has that job (zuko's runs are
reproducible: the script checks that the files agree and says so if not).
zuko:nsf is the peer of both spline families (on 2-D data zuko's NSF and its
spline coupling are one model). Prints the markdown table of this folder's
README.
"""
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.dirname(HERE)
sys.path.insert(0, RESULTS)
from seed_table import print_family_table  # noqa: E402

CELLS = [("MAF", "kerasflows:maf", "zuko:maf", ds) for ds in ("checkerboard", "moons", "pinwheel")]
CELLS += [("RealNVP", "kerasflows:realnvp", "zuko:realnvp", ds)
          for ds in ("checkerboard", "moons", "rings")]
CELLS += [(fam, key, "zuko:nsf", ds)
          for fam, key in (("NSF autoregressive", "kerasflows:nsf"),
                           ("NSF coupling", "kerasflows:nsf_coupling"))
          for ds in ("moons", "rings")]


def records(path):
    try:
        doc = json.load(open(path))
    except (OSError, ValueError):
        return []
    rs = doc.get("results") if isinstance(doc, dict) else None
    return [r for r in rs or [] if isinstance(r, dict) and r.get("status") == "ok"
            and r.get("gap_nats") is not None and "seed" in r]


ours = {}    # (key, dataset) -> {seed: gap}
for path in [os.path.join(RESULTS, "2026-12-02-session29-full.json")] + sorted(
        glob.glob(os.path.join(HERE, "*.json"))):
    for r in records(path):
        if r["key"].startswith("kerasflows:"):
            ours.setdefault((r["key"], r["dataset"]), {})[r["seed"]] = r["gap_nats"]

zuko, disagree = {}, set()   # (key, dataset) -> {seed: gap}
for path in sorted(glob.glob(os.path.join(RESULTS, "**", "*.json"), recursive=True)):
    for r in records(path):
        if r["key"].startswith("zuko:") and r["dataset"] != "digits":
            have = zuko.setdefault((r["key"], r["dataset"]), {})
            if r["seed"] in have and abs(have[r["seed"]] - r["gap_nats"]) > 1e-9:
                disagree.add((r["key"], r["dataset"], r["seed"]))
            have.setdefault(r["seed"], r["gap_nats"])

print_family_table(CELLS, ours, zuko)
used = {(peer, ds) for _, _, peer, ds in CELLS}
bad = sorted(d for d in disagree if d[:2] in used)
print("\nzuko's files agree at every seed used." if not bad else
      f"\nzuko's files disagree at: {bad}")
