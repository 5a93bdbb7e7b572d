"""Rebuilds `saved_models/`: trains, exports and describes every shipped flow.

For each dataset this runs `kerasflows train` with the settings of
`kerasflows.recipes.recommended(name)` in a fresh process, then writes
`saved_models/<name>/`:

- `flow.keras`: the trained flow (with its training record inside);
- `saved_model/1/`: the TF Serving SavedModel (`kerasflows export`);
- `manifest.json`: name, dataset, recipe, sizes, test NLL, the true entropy
  of the test split where known, and the command that reproduces the model;
- `data_sample.npy`: up to 2,000 rows of the dataset's test split.

For `digits` and `digits_label` the manifest also says that its points are 8x8 pictures
(`image`: `shape`, and the `levels` drawn black and white), which the
visualizer's Samples view shows as images.

`ring_radius` and `digits_label` are conditional
(`kerasflows.datasets.load_conditional`: a ring whose radius is the context;
the digits with their labels) train by name, `kerasflows train ring_radius
--n 60000` and `kerasflows train digits_label --context-classes 10` (all
1,797 digits, a learned embedding of the label), so the manifest's command
reruns as it stands; their test NLL is that of
p(x | context), the ring's true entropy is the mean of
`-true_conditional_log_prob` over the test split, and the manifest names
the context (`context_names`, `context_range`, for the label `context_step`
1) and the context the visualizer opens at (`context`). They ship no data
sample (their points mix every context).

With the benchmark data (`--bench-dir`, default `../shared/bench/data`
when it exists) the flows of its sets (all but `moons4d`, four columns, and
`heavy_tails`, both ours only:
`kerasflows.datasets`) train on the benchmark's train split, validate on
its validation split and report the NLL of its test split, so test NLL minus
`H_test_mean` of `entropy.json` is the benchmark's gap. Without it they use
`kerasflows.datasets` draws, and the true entropy is estimated from
`kerasflows.datasets.true_log_prob` on the test points.

Usage:

    python scripts/build_saved_models.py                      # everything
    python scripts/build_saved_models.py --names moons rings  # some
    python scripts/build_saved_models.py --export-only        # only the SavedModels
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BENCH = os.path.join(os.path.dirname(ROOT), "shared", "bench", "data")
NAMES = ("moons", "eight_gaussians", "checkerboard", "rings", "pinwheel", "two_spirals", "moons4d",
         "heavy_tails", "digits", "ring_radius", "digits_label")
#: Rows drawn for a set that is not in the benchmark data (default 60,000): with
#: 60,000 (48,000 to train on) the 4-D flow overfitted, 0.027 nats from the truth
#: after 60 epochs against 0.009 with these after 30.
ROWS = {"moons4d": 200_000, "digits": 1797}
#: Rows drawn for a conditional set (train, validation and test splits of `kerasflows train`);
#: None: the set's default (all 1,797 images for digits_label).
CONDITIONAL_ROWS = {"ring_radius": 60_000, "digits_label": None}
#: What the visualizer shows of each conditional set's context.
CONTEXTS = {
    "ring_radius": {"context_names": ["radius"], "context_range": [[1.0, 4.0]],
                    "context": [2.5]},
    "digits_label": {"context_names": ["digit"], "context_range": [[0, 9]],
                     "context_step": [1], "context": [3]},
}


def _in_bench(name, bench_dir):
    """Whether the benchmark data hold `name`'s splits (moons4d and heavy_tails are ours)."""
    return bool(bench_dir) and os.path.exists(os.path.join(bench_dir, f"{name}_train.npy"))


def _train_args(name, settings, bench_dir, epochs):
    from kerasflows import datasets
    if name in datasets.CONDITIONAL_NAMES:    # drawn by `train` itself (seed 0, as below)
        rows = CONDITIONAL_ROWS[name]
        args = [name] + ([] if rows is None else ["--n", str(rows)])
    elif _in_bench(name, bench_dir):
        data = [os.path.join(bench_dir, f"{name}_{split}.npy") for split in ("train", "val", "test")]
        args = [data[0], "--validation-data", data[1], "--test-data", data[2]]
    else:
        args = [name, "--n", str(ROWS.get(name, 60_000))]
    args += ["--recipe", settings["recipe"], "--layers", str(settings["num_layers"]),
             "--hidden", ",".join(map(str, settings["hidden_units"])),
             "--epochs", str(epochs or settings["epochs"]),
             "--batch-size", str(settings["batch_size"]), "--lr", str(settings["lr"]),
             "--lr-decay", settings["lr_decay"], "--seed", "0"]
    if "bins" in settings:
        args += ["--bins", str(settings["bins"]), "--bound", str(settings["bound"])]
    if settings.get("direction"):
        args += ["--direction", settings["direction"]]
    if "standardize" in settings:
        args += ["--standardize" if settings["standardize"] else "--no-standardize"]
    if settings.get("base"):
        args += ["--base", settings["base"]]
    if settings.get("context_classes"):
        args += ["--context-classes", str(settings["context_classes"])]
    return args


def _test_split(name, bench_dir, record):
    from kerasflows import datasets
    if name in datasets.CONDITIONAL_NAMES:
        x, c = datasets.load_conditional(name, n=CONDITIONAL_ROWS[name], seed=0)
        order = np.random.default_rng(record["seed"]).permutation(len(x))
        return x[order][:record["n_test"]], c[order][:record["n_test"]]
    if _in_bench(name, bench_dir):
        return np.load(os.path.join(bench_dir, f"{name}_test.npy")).astype(np.float32)
    x = datasets.load(name, n=record["n_train"] + record["n_validation"] + record["n_test"],
                      seed=record["seed"])
    x = x[np.random.default_rng(record["seed"]).permutation(len(x))]
    return x[:record["n_test"]]


def _true_entropy(name, bench_dir, test):
    from kerasflows import datasets
    if name in datasets.CONDITIONAL_NAMES:
        try:
            return float(-np.mean(datasets.true_conditional_log_prob(name, *test)))
        except ValueError:      # no known density (digits_label)
            return None
    if bench_dir and os.path.exists(os.path.join(bench_dir, "entropy.json")):
        with open(os.path.join(bench_dir, "entropy.json")) as f:
            entropy = json.load(f)
        if name in entropy:
            return entropy[name]["H_test_mean"]
    try:
        return float(-np.mean(datasets.true_log_prob(name, test)))
    except ValueError:
        return None


def export_one(folder, context_names=None):
    """(Re)writes `folder/saved_model/1` from `folder/flow.keras`, with the context's
    `context_names` (default: those of `folder/manifest.json`, if any); returns the
    flow."""
    import kerasflows
    from kerasflows.export import export_saved_model
    flow = kerasflows.load(folder)
    manifest = os.path.join(folder, "manifest.json")
    if context_names is None and os.path.isfile(manifest):
        with open(manifest) as f:
            context_names = json.load(f).get("context_names")
    shutil.rmtree(os.path.join(folder, "saved_model"), ignore_errors=True)
    export_saved_model(flow, os.path.join(folder, "saved_model"), version=1,
                       context_columns=context_names)
    return flow


def build_one(name, out_dir, bench_dir, epochs):
    """Trains and writes `out_dir/name/`; returns its manifest."""
    import kerasflows
    from kerasflows import recipes
    from kerasflows import datasets
    settings = recipes.recommended(name)
    folder = os.path.join(out_dir, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    out = os.path.relpath(os.path.join(folder, "flow.keras"), ROOT)
    conditional = name in datasets.CONDITIONAL_NAMES
    cmd = [sys.executable, "-m", "kerasflows.cli", "train",
           *_train_args(name, settings, bench_dir, epochs), "--out", out]
    subprocess.run(cmd, check=True, cwd=ROOT)
    report = os.path.join(folder, "flow.json")  # train's report; the manifest replaces it
    with open(report) as f:
        record = json.load(f)
    os.remove(report)
    flow = export_one(folder, CONTEXTS.get(name, {}).get("context_names"))
    test = _test_split(name, bench_dir, record)
    if not conditional:
        np.save(os.path.join(folder, "data_sample.npy"), test[:2000].astype(np.float32))
    entropy = _true_entropy(name, bench_dir, test)
    manifest = {
        "name": name, "dataset": name, "target": None, "recipe": settings["recipe"],
        "event_dim": flow.event_dim, "num_layers": settings["num_layers"],
        "hidden_units": settings["hidden_units"], "bins": settings.get("bins"),
        "test_nll": record["test_nll"], "test_nll_se": record["test_nll_se"],
        "true_entropy": entropy,
        "gap": None if entropy is None else record["test_nll"] - entropy,
        "test_data": ("kerasflows.datasets.load_conditional draw" if conditional else
                      "bench test split" if _in_bench(name, bench_dir)
                      else "kerasflows.datasets draw"),
        "epochs": record["epochs"], "train_seconds": record["train_seconds"],
        "parameters": record["parameters"], "command": record["command"],
        "kerasflows_version": kerasflows.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if name in ("digits", "digits_label"):  # 8x8 pictures: black at pixel 0, white at 17
        manifest["image"] = {"shape": [8, 8], "levels": [         # (16 + dequantisation)
            round(-datasets.DIGITS_MEAN / datasets.DIGITS_STD, 4),
            round((1 - datasets.DIGITS_MEAN) / datasets.DIGITS_STD, 4)]}
    if conditional:
        rows = "" if CONDITIONAL_ROWS[name] is None else f"n={CONDITIONAL_ROWS[name]}, "
        manifest.update(data=f"x, context = kerasflows.datasets.load_conditional({name!r}, "
                             f"{rows}seed=0), as 'command' draws it",
                        context_dim=flow.context_dim, **CONTEXTS[name])
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", nargs="+", default=list(NAMES), choices=NAMES,
                        help="which models to rebuild (default: all)")
    parser.add_argument("--out", default=os.path.join(ROOT, "saved_models"),
                        help="output folder")
    parser.add_argument("--bench-dir", default=DEFAULT_BENCH if os.path.isdir(DEFAULT_BENCH)
                        else None, help="benchmark data folder (<name>_{train,val,test}.npy)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the recommended epochs (for a quick trial build)")
    parser.add_argument("--export-only", action="store_true",
                        help="keep the trained flow.keras files; only rewrite the SavedModels")
    args = parser.parse_args(argv)
    if args.export_only:
        for name in args.names:
            export_one(os.path.join(args.out, name))
            print(f"{name}: SavedModel rewritten", flush=True)
        return 0
    for name in args.names:
        m = build_one(name, args.out, args.bench_dir, args.epochs)
        gap = "" if m["gap"] is None else f", gap to the true entropy {m['gap']:+.4f}"
        print(f"{name}: test NLL {m['test_nll']:.4f}{gap} ({m['train_seconds']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
