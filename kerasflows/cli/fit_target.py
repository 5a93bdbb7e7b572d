"""`kerasflows fit-target --target NAME`: fit a flow to a 2-D target density by reverse KL.

Trains with `kerasflows.VariationalFlow` (samples from the flow, no data),
then measures the ELBO, the effective sample size and, since every shipped
target's log Z is known, the reverse KL in nats. Writes the `.keras` model
(with its record inside) and a JSON report; `--model-dir` writes the
`saved_models/<name>/` layout instead (`flow.keras`, `manifest.json`, and
`saved_model/1/` when the flow is invertible).
"""

import datetime
import json
import math
import os
import shlex
import time

from kerasflows.cli.common import (HelpFormatter, UserError, add_direction_argument,
                                   add_seed_argument, add_spline_arguments, check_recipe_options,
                                   check_outputs, check_paths_given, json_safe, output_folder,
                                   positive_float, positive_int, progress_verbosity,
                                   save_atomically, units, write_error_reason, write_output,
                                   written_or_kept)

__all__ = ["add_parser", "run", "build_flow", "FORWARD_ONLY_RECIPES"]

#: Recipes built from forward-only layers (no SavedModel export, no log_prob of data).
FORWARD_ONLY_RECIPES = ("planar", "radial")
#: The conditioners' hidden units when `--hidden` is not given.
DEFAULT_HIDDEN = [64, 64]


def add_parser(subparsers):
    from kerasflows import targets
    from kerasflows.recipes import RECIPES
    p = subparsers.add_parser(
        "fit-target", help="fit a flow to a 2-D target density (variational, reverse KL)",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        formatter_class=HelpFormatter)
    p.add_argument("--target", required=True, choices=list(targets.NAMES),
                   help="the target density (kerasflows.targets)")
    p.add_argument("--recipe", default="planar", choices=[*FORWARD_ONLY_RECIPES, *RECIPES],
                   help="planar or radial layers, or a kerasflows.models recipe")
    p.add_argument("--layers", type=positive_int, default=32, help="number of flow layers")
    p.add_argument("--hidden", type=units,
                   help="hidden units of each conditioner (default: "
                   f"{','.join(map(str, DEFAULT_HIDDEN))}; not for planar/radial)")
    add_spline_arguments(p)
    add_direction_argument(p)
    p.add_argument("--epochs", type=positive_int, default=10, help="number of epochs")
    p.add_argument("--steps", type=positive_int, default=200, help="training steps per epoch")
    p.add_argument("--batch-size", type=positive_int, default=512, help="samples per step")
    p.add_argument("--lr", type=positive_float, default=5e-3, help="Adam learning rate")
    add_seed_argument(p, "seeds initialization and sampling")
    p.add_argument("--eval-samples", type=positive_int, default=20_000,
                   help="samples for the final ELBO / ESS / KL estimates")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--out", metavar="FILE.keras",
                     help="the trained model (default: TARGET_RECIPE.keras)")
    out.add_argument("--model-dir", metavar="DIR", help="write DIR/flow.keras, "
                     "DIR/manifest.json and, for a recipe with an inverse (not "
                     f"{' or '.join(FORWARD_ONLY_RECIPES)}), DIR/saved_model/1 "
                     "(saved_models/ layout)")
    p.add_argument("--report", metavar="FILE.json",
                   help="the JSON report (default: --out with .json; none with --model-dir)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress output (a live bar on a terminal, one line per epoch "
                   "otherwise)")
    return p


def build_flow(recipe, num_layers, hidden_units=None, bins=None, bound=None,
               direction=None):
    """A 2-D flow for `recipe`: `planar`/`radial` layers or a `kerasflows.recipes` name
    (conditioners of `hidden_units`, default `DEFAULT_HIDDEN`)."""
    import kerasflows
    from kerasflows import layers, recipes
    if recipe in FORWARD_ONLY_RECIPES:
        given = [flag for flag, value in (("--hidden", hidden_units), ("--bins", bins),
                                          ("--bound", bound), ("--direction", direction))
                 if value is not None]
        if given:
            verb = "do not apply" if len(given) > 1 else "does not apply"
            raise UserError(f"{'/'.join(given)} {verb} to {recipe} layers, which have no "
                            f"conditioner. Received: --recipe {recipe}")
        cls = layers.Planar if recipe == "planar" else layers.Radial
        return kerasflows.Flow([cls() for _ in range(num_layers)], event_dim=2)
    check_recipe_options(recipe, bins, bound, direction)
    return recipes.build(recipe, 2, num_layers, hidden_units or DEFAULT_HIDDEN, bins, bound,
                         direction)


def _train(args, flow):
    import keras
    from kerasflows.variational import VariationalFlow
    vi = VariationalFlow(flow, args.target, batch_size=args.batch_size)
    vi.compile(optimizer=keras.optimizers.Adam(args.lr))
    start = time.perf_counter()
    history = vi.fit(epochs=args.epochs, steps_per_epoch=args.steps,
                     callbacks=[keras.callbacks.TerminateOnNaN()],
                     verbose=progress_verbosity(args.quiet))
    losses = history.history["loss"]
    if not all(math.isfinite(v) for v in losses):
        raise FloatingPointError(f"training diverged (loss {losses[-1]}); try a smaller --lr.")
    history = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    return vi, history, time.perf_counter() - start


def _record(args, flow, history, diagnostics, seconds):
    import kerasflows
    return {"target": args.target, "recipe": args.recipe, "event_dim": flow.event_dim,
            "num_layers": args.layers,
            "hidden_units": (None if args.recipe in FORWARD_ONLY_RECIPES
                             else args.hidden or DEFAULT_HIDDEN),
            "bins": args.bins, "bound": args.bound, "direction": args.direction,
            "epochs": args.epochs, "steps": args.steps,
            "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
            **diagnostics, "eval_samples": args.eval_samples, "history": history,
            "train_seconds": round(seconds, 1), "parameters": int(flow.count_params()),
            "command": shlex.join(["kerasflows", *args.argv]),
            "kerasflows_version": kerasflows.__version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def _manifest(name, record):
    keys = ("target", "recipe", "event_dim", "num_layers", "hidden_units", "bins", "elbo",
            "elbo_se", "ess", "log_z", "reverse_kl", "epochs", "train_seconds", "parameters",
            "command", "kerasflows_version", "created")
    manifest = {"name": name, "dataset": None, **{k: record[k] for k in keys}}
    manifest.update(test_nll=None, true_entropy=None,
                    forward_only=record["recipe"] in FORWARD_ONLY_RECIPES)
    return manifest


def _write_model_dir(folder, flow, record):
    """Writes the SavedModel, manifest.json and, last, flow.keras (with its record)
    into `folder`; a write that fails (a full disk) removes what this run wrote
    there and raises UserError naming --model-dir, the path and the reason: the
    folder holds no flow.keras, so a rerun is not refused."""
    import shutil
    import tensorflow as tf
    from kerasflows.export import export_saved_model
    path = os.path.join(folder, "flow.keras")     # `folder` made by run's output_folder
    written = []
    try:
        if record["recipe"] not in FORWARD_ONLY_RECIPES:
            written.append(os.path.join(folder, "saved_model"))
            export_saved_model(flow, written[-1], version=1, overwrite=True)
        name = os.path.basename(os.path.normpath(folder))
        text = json.dumps(_manifest(name, record), indent=1).encode()
        written.append(os.path.join(folder, "manifest.json"))
        write_output(written[-1], lambda f: f.write(text))
        written.append(path)
        save_atomically(flow, path, record)
    except (OSError, tf.errors.OpError) as e:     # (TensorFlow's file errors are no OSError)
        for item in written:
            if os.path.isdir(item):
                shutil.rmtree(item, ignore_errors=True)
            elif os.path.exists(item):
                os.remove(item)
        raise UserError(f"cannot write --model-dir {written[-1]}: {write_error_reason(e)}; "
                        f"what this run wrote in {folder} is removed.") from None
    return path


def _paths(args):
    check_paths_given([("--out", args.out), ("--report", args.report),
                       ("--model-dir", args.model_dir)])
    if args.model_dir:
        if os.path.exists(os.path.join(args.model_dir, "flow.keras")):
            raise UserError(f"{args.model_dir} already holds a flow.keras; remove it first.")
        return None, args.report
    out = args.out or f"{args.target}_{args.recipe}.keras"
    if not out.endswith(".keras"):
        raise UserError(f"--out must end in .keras. Received: {out}")
    return out, args.report or out[:-len(".keras")] + ".json"


def run(args):
    import keras
    from kerasflows.variational import diagnostics
    out, report = _paths(args)
    # Before training, which is lost when the result cannot be written.
    model_path = os.path.join(args.model_dir, "flow.keras") if args.model_dir else out
    folders = []
    if args.model_dir:      # the folder and what _write_model_dir writes beside flow.keras
        folders = [("--model-dir", args.model_dir),
                   ("--model-dir", os.path.join(args.model_dir, "manifest.json")),
                   ("--model-dir", os.path.join(args.model_dir, "saved_model"))]
    check_outputs([("--model-dir" if args.model_dir else "--out", model_path),
                   ("--report", report)], folders=folders)
    keras.utils.set_random_seed(args.seed)
    # (before the folders are made: a recipe's refused options left an empty new folder)
    flow = build_flow(args.recipe, args.layers, args.hidden, args.bins, args.bound,
                      args.direction)
    for option, path in (("--model-dir" if args.model_dir else "--out", model_path),
                         ("--report", report)):
        if path:
            output_folder(path, option)
    _, history, seconds = _train(args, flow)
    diag = diagnostics(flow, args.target, n=args.eval_samples, seed=args.seed)
    record = json_safe(_record(args, flow, history, diag, seconds))     # NaN as null
    if args.model_dir:
        out = _write_model_dir(args.model_dir, flow, record)
    else:       # whole or not at all, the file there before kept (its folder made above)
        with written_or_kept("--out", out):
            save_atomically(flow, out, record)
    if report:
        text = json.dumps(record, indent=1).encode()
        with written_or_kept("--report", report):
            write_output(report, lambda f: f.write(text))
    print(f"Saved {out}{' and ' + report if report else ''}. ELBO {diag['elbo']:.4f} "
          f"(log Z {diag['log_z']:.4f}), reverse KL {diag['reverse_kl']:.4f} nats, "
          f"ESS {100 * diag['ess']:.1f}%.", flush=True)
    return 0
