"""`kerasflows train DATA`: fit a flow by maximum likelihood and save it.

Writes the `.keras` model (with its training record inside), a JSON report
(train/validation/test NLL, history, the exact command) and, after every
epoch, a checkpoint; run the same command after a crash to resume from the
last finished epoch. The checkpoint folder is removed once the model is
saved.
"""

import argparse
import contextlib
import datetime
import json
import os
import shlex
import time

import numpy as np

from kerasflows.cli.common import (HelpFormatter, UserError, add_direction_argument,
                                   add_seed_argument, add_spline_arguments, check_recipe_options,
                                   check_outputs, check_paths_given, fraction, json_safe,
                                   output_folder, save_atomically, write_output,
                                   positive_float, positive_int, progress_verbosity, units,
                                   writable_folder)
from kerasflows.cli.data import column_list, is_dataset_name, read_column_names
from kerasflows.cli.evaluate import column_marginals, marginals_line
from kerasflows.cli.resume import (check_checkpoint, diverged, fingerprint, holding, interrupted,
                                   spelled_as_checkpoint, writing)
from kerasflows.cli.train_data import dequantized_columns, noisy_parts, read_inputs, split_parts

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    from kerasflows.distributed import STRATEGIES
    from kerasflows.flow import BASES
    from kerasflows.models import MASKS
    from kerasflows.recipes import RECIPES
    p = subparsers.add_parser(
        "train", help="train a flow on a dataset or a data file",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1] + " Every epoch is "
        "checkpointed; rerunning the same command after a crash (or Ctrl-C) resumes from the "
        "last finished epoch.",
        formatter_class=HelpFormatter)
    p.add_argument("data", help="a dataset name (moons, eight_gaussians, checkerboard, rings, "
                   "pinwheel, two_spirals; moons4d, four columns; heavy_tails; digits), a "
                   "conditional set whose context comes with it (ring_radius, digits_label: give "
                   "--context-classes 10 for its labels) or a .npy/.csv file of shape [N, D] "
                   "(a dataset name is the dataset even where a file or folder of that name "
                   "exists; a .csv header's column names are kept with the model)")
    p.add_argument("--recipe", default="nsf", choices=list(RECIPES),
                   help="the flow family (kerasflows.models); for one-column data maf, "
                   "iaf or nsf_ar (the others split the columns)")
    p.add_argument("--layers", type=positive_int, default=5, help="number of flow layers")
    p.add_argument("--hidden", type=units, default=[64, 64],
                   help="hidden units of each conditioner network, comma-separated")
    add_spline_arguments(p)
    add_direction_argument(p)
    p.add_argument("--mask", choices=list(MASKS), default=None,
                   help="how a coupling recipe (realnvp, nice, nsf) splits D > 2 dimensions: "
                   "checkerboard, each layer one parity class given the other, alternating "
                   "(realnvp's and nice's default), or halves, the trailing half given the "
                   "leading one (nsf's default)")
    p.add_argument("--base", choices=list(BASES), default="normal",
                   help="the base distribution: normal (standard normal), learned_normal "
                   "(a diagonal Gaussian with trained mean and scale) or student_t (a "
                   "Student-t per coordinate with trained degrees of freedom: for data "
                   "with heavy tails, such as returns, claims or incomes)")
    p.add_argument("--epochs", type=positive_int, default=20, help="number of epochs")
    p.add_argument("--batch-size", type=positive_int, default=512,
                   help="global batch size; an epoch is N // it full batches of a fresh "
                        "shuffle (the rows left over differ from epoch to epoch)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    p.add_argument("--lr-decay", choices=["none", "cosine"], default="none",
                   help="learning-rate schedule: constant, or cosine decay to 0")
    add_seed_argument(p, "seeds the data draw, the splits, initialization and batch order")
    p.add_argument("--n", type=positive_int, default=None,
                   help="points to draw when DATA is a dataset name (default 10000; digits, "
                   "digits_label: all 1797 images); not for a data file")
    p.add_argument("--context", metavar="FILE",
                   help="a .npy/.csv file [N, C] of contexts, one row per row of DATA: trains "
                   "a conditional flow p(x | context) (validation and test rows then come from "
                   "the splits)")
    p.add_argument("--context-encoder", type=units, metavar="UNITS", default=None,
                   help="for a conditional flow (--context, or a conditional set as DATA): a "
                   "dense ReLU network, trained with the flow, from "
                   "the context to the features the layers are conditioned on; comma-"
                   "separated sizes, the last one the number of features (e.g. 64,16: one "
                   "hidden layer of 64, 16 features) (default: the layers see the context "
                   "as given)")
    p.add_argument("--context-classes", type=positive_int, metavar="K", default=None,
                   help="for a conditional flow: the context is one class label per row, an "
                   "integer "
                   "in 0..K-1 (a digit's label, say); the layers see a learned embedding of "
                   "it (kerasflows.layers.ClassEmbedding(K), 32 features, trained with the "
                   "flow; then --context-encoder's network, if given)")
    p.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=None,
                   help="put an ActNorm layer named standardize at the data end, set from the "
                   "first batch to the data's mean and standard deviation per column (then "
                   "trained with the rest), and a --context file's values (not class labels) "
                   "through a keras.layers.Normalization to the training contexts' mean and "
                   "variance: the flow works on unit-scale values and its log-densities are "
                   "in DATA's units (default: on for a data file and heavy_tails, off for the "
                   "other dataset names, whose points are on a unit scale already)")
    p.add_argument("--dequantize", action="store_true",
                   help="add uniform noise in [0, 1) to DATA's columns of whole numbers only, "
                   "new each epoch (dequantization; validation and test rows get one seeded "
                   "draw): the flow then gives a discrete distribution, P(k) the integral of "
                   "its density over [k, k+1). evaluate adds the noise for the model, and "
                   "sample rounds those columns down")
    p.add_argument("--validation-split", type=fraction, default=0.1,
                   help="fraction of the training data held out for validation (0: none)")
    p.add_argument("--validation-data", metavar="FILE", help="a .npy/.csv validation set "
                   "(replaces --validation-split)")
    p.add_argument("--test-split", type=fraction, default=0.1,
                   help="fraction of DATA held out as the test set (0: none)")
    p.add_argument("--test-data", metavar="FILE",
                   help="a .npy/.csv test set (replaces --test-split)")
    p.add_argument("--out", metavar="FILE.keras",
                   help="the trained model (default: DATA's name + .keras)")
    p.add_argument("--report", metavar="FILE.json",
                   help="the JSON report (default: --out with .json)")
    p.add_argument("--save-every-epoch", action="store_true",
                   help="also write --out after every epoch, with the training record so "
                   "far (columns, dequantized columns, epochs done), so `kerasflows-viz "
                   "--follow OUT` shows the flow as it trains and a stopped run leaves a "
                   "model that evaluate and sample read as a finished one's (each save is "
                   "written beside OUT and renamed over it, so a reader never sees half a "
                   "file)")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="after every epoch, write TensorBoard logs to DIR: the loss curves "
                   "(runs train and validation, as keras.callbacks.TensorBoard writes them) and "
                   "pictures of the flow (run flow: its density, samples and the training data; "
                   "a conditional flow at each label, or at three quantiles of its context; "
                   "kerasflows.callbacks.FlowImages; for data of 2 or more columns); see them with: tensorboard --logdir DIR")
    p.add_argument("--checkpoint-dir", metavar="DIR",
                   help="per-epoch checkpoints (default: --out with .checkpoint)")
    strategy = p.add_argument(
        "--strategy", choices=list(STRATEGIES), default="default",
        help="tf.distribute strategy: default (one process; used when --strategy is not "
        "given), mirrored (MirroredStrategy over this machine's devices) or multiworker "
        "(MultiWorkerMirroredStrategy, configured by TF_CONFIG)")
    strategy.show_default = False       # the help says it; "(default: default)" would not
    p.add_argument("--quiet", action="store_true",
                   help="no progress output (a live bar on a terminal, one line per epoch "
                   "otherwise)")
    return p


def _paths(args):
    stem = os.path.splitext(os.path.basename(args.data))[0]
    check_paths_given([("--out", args.out), ("--report", args.report),
                       ("--checkpoint-dir", args.checkpoint_dir)])
    out = args.out or f"{stem}.keras"
    if not out.endswith(".keras"):
        raise UserError(f"--out must end in .keras. Received: {out}")
    base = out[:-len(".keras")]
    return out, args.report or base + ".json", args.checkpoint_dir or base + ".checkpoint"


def _context_encoder(args, scale=None):
    """The `--context-classes` embedding and/or `--context-encoder` network, after a
    `keras.layers.Normalization` to the training contexts' `scale` `(mean,
    variance)` when given; or None."""
    import keras
    from kerasflows.layers import MLP, ClassEmbedding
    parts = []
    if scale is not None:
        parts.append(keras.layers.Normalization(mean=scale[0], variance=scale[1],
                                                name="context_standardize"))
    if args.context_classes:
        parts.append(ClassEmbedding(args.context_classes, name="label_embedding"))
    if args.context_encoder:
        *hidden, features = args.context_encoder
        parts.append(MLP(features, hidden_units=hidden, zero_init=False,
                         name="context_encoder" if not parts else "context_network"))
    if len(parts) == 1:
        return parts[0]
    return keras.Sequential(parts, name="context_encoder") if parts else None


def _builder(args, event_dim, context=None, standardize=False):
    """`build()`, making the flow `args` describe; with `standardize`, its data end is
    an ActNorm and a continuous `context` (the training contexts; not class labels)
    goes through a Normalization to their mean and variance first."""
    from kerasflows import recipes
    check_recipe_options(args.recipe, args.bins, args.bound, args.direction, args.mask)
    if event_dim < 2 and args.recipe in recipes.COUPLING_RECIPES:
        others = recipes.ONE_DIMENSION_RECIPES
        raise UserError(f"--recipe {args.recipe} needs data of 2 or more columns: its coupling "
                        f"layers split the columns in two; received {event_dim} column. Use "
                        f"--recipe {', '.join(others[:-1])} or {others[-1]}.")
    context_dim = None if context is None else context.shape[1]
    scale = None
    if standardize and context is not None and not args.context_classes:
        # a column with one value has no scale: variance 1 (Keras' floor of 1e-7 on the
        # deviation blew any other value up a million-fold)
        variance = context.var(0)
        scale = (context.mean(0).tolist(), np.where(variance > 0, variance, 1.0).tolist())

    def build():
        kwargs = {"context_dim": context_dim, "base": args.base}
        if args.mask is not None:
            kwargs["mask"] = args.mask
        encoder = _context_encoder(args, scale)
        if encoder is not None:
            kwargs["context_encoder"] = encoder
        return recipes.build(args.recipe, event_dim, args.layers, args.hidden, args.bins,
                             args.bound, args.direction, standardize=standardize, **kwargs)
    build()     # bad settings raise here, before any data is split or strategy set up
    return build


def _settings(args, dataset, parts, flow):
    """The training record's fields known before any epoch: the data, its columns and
    splits, the flow's settings, the command."""
    import kerasflows
    names = read_column_names(args.data) if dataset is None else None
    context_names = read_column_names(args.context)
    return {"data": args.data, "dataset": dataset,
            # where the file was (the visualizer reads it again to show the data)
            "data_path": None if dataset is not None else os.path.abspath(args.data),
            "recipe": args.recipe,
            "columns": names if names and len(names) == flow.event_dim else None,
            "context_columns": (context_names if context_names
                                and len(context_names) == flow.context_dim else None),
            "event_dim": flow.event_dim, "context_dim": flow.context_dim,
            "context": args.context, "context_encoder": args.context_encoder,
            "context_classes": args.context_classes,
            "num_layers": args.layers, "hidden_units": args.hidden,
            "bins": args.bins, "bound": args.bound, "direction": args.direction,
            "mask": args.mask, "base": args.base,
            "epochs": args.epochs,
            "batch_size": args.batch_size, "lr": args.lr, "lr_decay": args.lr_decay,
            "seed": args.seed, "strategy": args.strategy,
            "n_train": len(parts[0][0]),
            "n_validation": len(parts[1][0]) if parts[1] is not None else 0,
            "n_test": len(parts[2][0]) if parts[2] is not None else 0,
            **_context_summary(args, parts[0]),
            "parameters": int(flow.count_params()),
            "command": shlex.join(["kerasflows", *args.argv]),
            "kerasflows_version": kerasflows.__version__, "created": _now()}


def _now():
    """The record's `created`: UTC, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _context_summary(args, train):
    """Where the training contexts lie, for the visualizer's Context panel (which
    opened a CLI flow at 0, its sliders on [-3, 3], whatever the contexts): per
    column the 0.5% and 99.5% quantiles (`context_range`, as a model folder's
    manifest has it; a column of one value widened by 0.5 each way) and the median
    (`context_median`, where it opens). None for an unconditional flow or class labels
    (`context_classes`: the labels are the range)."""
    if len(train) < 2 or train[1] is None or args.context_classes:
        return {}
    c = np.asarray(train[1], np.float64)
    low, high = np.quantile(c, [0.005, 0.995], axis=0)
    ranges = [[float(lo), float(hi)] if hi > lo else [float(lo) - 0.5, float(lo) + 0.5]
              for lo, hi in zip(low, high)]
    return {"context_range": ranges, "context_median": np.median(c, axis=0).tolist()}


def _record(args, dataset, parts, flow, history, seconds):
    """The training record of a finished run: `_settings`, each split's NLL, the history."""
    from kerasflows.distributed import evaluate_nll
    nll = {name: (evaluate_nll(flow, *part) if part is not None else (None, None))
           for name, part in zip(("train", "validation", "test"), parts)}
    return {**_settings(args, dataset, parts, flow),
            **{f"{k}_nll": v[0] for k, v in nll.items()}, "test_nll_se": nll["test"][1],
            "history": history, "train_seconds": round(seconds, 1)}


def _tensorboard_log(args, dataset, x, context=None):
    """`on_epoch_end` for `train_flow` writing the epoch's losses and `FlowImages`
    pictures to `--tensorboard`: a conditional flow at each label (up to 10; the
    class-conditional digits one row each), else at the 10%, 50% and 90% quantiles
    of a one-number context, else at the median context. A one-column flow gets
    its losses only (`FlowImages` draws 2 or more columns)."""
    import tensorflow as tf
    images = _flow_images(args, dataset, x, context)
    writers = {}

    def on_epoch_end(epochs_done, flow, history):
        if images is not None and images.flow is None:
            images.flow = flow
            images.on_train_begin()
        for key, run in (("loss", "train"), ("val_loss", "validation")):
            if history.get(key):
                if run not in writers:
                    writers[run] = tf.summary.create_file_writer(
                        os.path.join(args.tensorboard, run))
                with writers[run].as_default():
                    tf.summary.scalar("epoch_loss", history[key][-1], step=epochs_done - 1)
                writers[run].flush()
        if images is not None:
            images.draw(epochs_done - 1)
    return on_epoch_end


def _flow_images(args, dataset, x, context=None):
    """The `FlowImages` `_tensorboard_log` draws; None for one-column data."""
    from kerasflows.callbacks import FlowImages
    image = (8, 8) if dataset in ("digits", "digits_label") else None
    if image is None and x.shape[1] < 2:
        return None
    contexts = None
    if args.context_classes and (image or args.context_classes <= 10):
        contexts = np.arange(args.context_classes, dtype=np.float32)[:, None]    # each label
    elif context is not None and context.shape[1] == 1:
        contexts = np.quantile(context, [0.1, 0.5, 0.9], axis=0).astype(np.float32)
    return FlowImages(args.tensorboard, data=x[:20_000],
                      context=None if context is None else np.median(context, axis=0),
                      contexts=contexts, image_shape=image, seed=args.seed)


def _epoch_hooks(hooks):
    """One `on_epoch_end` calling each of `hooks` (None when there are none)."""
    hooks = [h for h in hooks if h is not None]
    if not hooks:
        return None
    return lambda *a: [h(*a) for h in hooks]


def _writing_hook(hook, option, path, checkpoint_dir):
    """`hook`, an `on_epoch_end` writing `option`'s `path`, with its OSError (a full
    disk) a UserError naming them and what the checkpoint keeps; None for None."""
    if hook is None:
        return None

    def written(*args):
        with writing(option, path, checkpoint_dir):
            return hook(*args)
    return written


def run(args):
    from kerasflows import datasets, recipes
    from kerasflows.checkpoint import EpochCheckpoint
    from kerasflows.distributed import get_strategy, is_chief, train_flow
    out, report, checkpoint_dir = _paths(args)
    strategy = get_strategy(args.strategy)  # first: collectives need a fresh TF context
    x, dataset, context = read_inputs(args)
    parts = split_parts(x, args, context)
    noisy = dequantized_columns(args, x, parts)
    measured = noisy_parts(parts, noisy, args.seed,     # the rows the NLL is measured on
                           (None, args.validation_data, args.test_data))
    # what --standardize's default means for this data (a rerun that gives it resumes)
    standardize_default = dataset is None or dataset in datasets.OFF_SCALE_NAMES
    standardize = args.standardize if args.standardize is not None else standardize_default
    build = _builder(args, x.shape[1], parts[0][1] if len(parts[0]) > 1 else None, standardize)
    held = contextlib.ExitStack()
    if is_chief(strategy):
        # Before any training: an unwritable --out would otherwise fail at the
        # first checkpoint, and the report's folder only after the last epoch.
        check_outputs([("--out", out), ("--report", report)],
                      [("DATA", None if is_dataset_name(args.data) else args.data),
                       ("--context", args.context), ("--validation-data", args.validation_data),
                       ("--test-data", args.test_data)],
                      [("--checkpoint-dir", checkpoint_dir), ("--tensorboard", args.tensorboard)])
        if os.path.exists(checkpoint_dir) and not os.path.isdir(checkpoint_dir):
            raise UserError(f"--checkpoint-dir {checkpoint_dir} is a file; expected a folder "
                            "(made as the run starts).")
        for option, path in (("--out", out), ("--report", report),
                             ("--checkpoint-dir", checkpoint_dir)):
            output_folder(path, option)
        if args.tensorboard:
            writable_folder(args.tensorboard, "--tensorboard")
        held.enter_context(holding(checkpoint_dir))     # this run's until it ends
    with held:
        if is_chief(strategy):
            check_checkpoint(checkpoint_dir)
        if noisy and not args.quiet and is_chief(strategy):
            print(f"Dequantizing {column_list(noisy, read_column_names(args.data))}: uniform "
                  "noise in [0, 1), new each epoch.", flush=True)
        if args.tensorboard and x.shape[1] < 2 and not args.quiet and is_chief(strategy):
            print(f"--tensorboard {args.tensorboard}: logging the losses only; its "
                  "pictures need 2 or more columns.", flush=True)
        if args.save_every_epoch and not args.quiet and is_chief(strategy):
            print(f"Writing {out} after every epoch; watch it with: kerasflows-viz {out} "
                  "--follow", flush=True)

        settings = {}       # the run's, read once (the data files' headers, the contexts)

        def save_epoch(done, flow, history):
            # with its record: a run stopped later leaves this file, which evaluate, sample
            # and the visualizer read as the final one (columns, dequantized columns)
            if not settings:
                settings.update(_settings(args, dataset, measured, flow))
            save_atomically(flow, out, json_safe({
                **settings, "created": _now(), "standardize": standardize,
                "dequantized_columns": noisy, "epochs_done": done, "history": history}))

        start = time.perf_counter()
        try:        # until the checkpoint is deleted, Ctrl-C says what it keeps
            # the hooks name their own outputs; train_flow writes only the checkpoint
            with writing("--checkpoint-dir", checkpoint_dir, checkpoint_dir):
                flow, history = train_flow(
                    build, *parts[0], epochs=args.epochs, batch_size=args.batch_size,
                    learning_rate=args.lr, lr_decay=args.lr_decay, seed=args.seed,
                    validation_data=measured[1], strategy=strategy,
                    checkpoint_dir=checkpoint_dir, dequantize=noisy,
                    fingerprint=spelled_as_checkpoint(
                        checkpoint_dir, fingerprint(args, x, context, parts),
                        {**recipes.defaults(args.recipe), "standardize": standardize_default}),
                    verbose=progress_verbosity(args.quiet),
                    on_epoch_end=_epoch_hooks([
                        _writing_hook(save_epoch, "--out", out, checkpoint_dir)
                        if args.save_every_epoch else None,
                        _writing_hook(_tensorboard_log(args, dataset, *measured[0]),
                                      "--tensorboard", args.tensorboard, checkpoint_dir)
                        if args.tensorboard else None]))
            record = _record(args, dataset, measured, flow, history, time.perf_counter() - start)
            record.update(standardize=standardize, dequantized_columns=noisy)
            if measured[2] is not None:         # the test split, column by column
                record["test_marginals"] = column_marginals(flow, *measured[2], seed=args.seed,
                                                            names=record["columns"])
            saved = json_safe(record)     # NaN (a split's s.e. of one row) as null
            with writing("--out", out, checkpoint_dir):
                save_atomically(flow, out, saved)
            if is_chief(strategy):
                with writing("--report", report, checkpoint_dir):
                    text = json.dumps(saved, indent=1, allow_nan=False).encode()
                    write_output(report, lambda f: f.write(text))
                EpochCheckpoint(checkpoint_dir, {}).delete()
        except KeyboardInterrupt as e:      # Ctrl-C, or SIGTERM (cli.Terminated)
            raise type(e)(interrupted(checkpoint_dir)) from None
        except FloatingPointError as e:
            raise FloatingPointError(f"{e} {diverged(checkpoint_dir)}") from None
    if is_chief(strategy):
        nll = ", ".join(f"{k} {record[f'{k}_nll']:.4f}" for k in ("train", "validation", "test")
                        if record[f"{k}_nll"] is not None)
        print(f"Saved {out} and {report}. NLL in nats per example: {nll}.", flush=True)
        if "test_marginals" in record:
            print(marginals_line(record["test_marginals"]), flush=True)
    return 0
