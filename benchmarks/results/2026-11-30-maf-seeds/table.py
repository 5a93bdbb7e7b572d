"""MAF's NLL gap on checkerboard, moons and pinwheel over seeds 0-9, ours and zuko:maf.

Seed 0 is the full run `../2026-11-30-philox.json`, seeds 1-2
`../2026-11-30-seed-spread/maf-{1,2}.json`, seeds 3-9 `maf-<seed>.json`
here (`run.sh`). Prints the markdown table of this folder's README.
"""
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.dirname(HERE)
sys.path.insert(0, RESULTS)
from seed_table import HEADER, paired_cells  # noqa: E402

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


print(f"| dataset | {HEADER} |")
print("|---|---|---|---|---|---|---|---|")
for ds in ("checkerboard", "moons", "pinwheel"):
    cells = paired_cells(gaps.get((ds, "kerasflows:maf"), {}), gaps.get((ds, "zuko:maf"), {}))
    if cells:
        print(f"| {ds} | {cells} |")
