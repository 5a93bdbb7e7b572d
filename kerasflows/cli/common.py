"""Helpers shared by the subcommands: reading data, opening models, writing arrays."""

import argparse
import math
import os
import re
import sys

import numpy as np

__all__ = ["UserError", "HelpFormatter", "read_data", "read_conditional_set", "read_array",
           "write_array", "output_folder", "open_flow",
           "check_columns", "positive_int", "positive_float", "fraction", "units",
           "add_direction_argument", "writable_folder", "NEGATIVE_VALUE",
           "progress_verbosity", "add_context_argument", "read_context"]


class UserError(Exception):
    """A mistake in the command line or its inputs; printed as one line, exit status 2."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it is None/False (those say it in their help)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def progress_verbosity(quiet):
    """Keras' `verbose` for training output: 0 with `--quiet`; 1 (a live progress bar)
    on a terminal; 2 (one plain line per epoch, no terminal escape codes) when stdout
    is a file or a pipe, as in logs and batch jobs."""
    if quiet:
        return 0
    return 1 if (hasattr(sys.stdout, "isatty") and sys.stdout.isatty()) else 2


def add_direction_argument(parser):
    """`--direction inverse|forward` (a recipe's `affine_direction` / `spline_direction`)."""
    parser.add_argument(
        "--direction", choices=["inverse", "forward"], default=None,
        help="the direction in which each layer's affine map or spline is written "
        "(realnvp, maf, iaf, glow, nsf, nsf_ar): inverse = data to base, as zuko and nflows "
        "(the layers' default), forward = base to data, as TFP and kerasflows 0.1.0")


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise _arg_error(f"expected an integer >= 1, got {text!r}")
    return value


#: What argparse reads as a negative number rather than an option flag: also
#: comma-separated lists that start with one (`--region -2,3,-1.5,2`), which
#: Python 3.11's argparse took for a flag ("expected one argument"); 3.13's
#: reads them so. For `parser._negative_number_matcher` (no option of ours, or
#: of the visualizer's, starts with a digit).
NEGATIVE_VALUE = re.compile(r"^-\.?\d")


def positive_float(text):
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise _arg_error(f"expected a finite number > 0, got {text!r}")
    return value


def fraction(text):
    """argparse type: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise _arg_error(f"expected a fraction in [0, 1), got {text!r}")
    return value


def units(text):
    """argparse type: hidden layer sizes as comma-separated positive integers, e.g. 64,64."""
    try:
        values = [int(u) for u in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise _arg_error(f"expected comma-separated positive integers such as 64,64, got {text!r}")
    return values


def _arg_error(message):
    return argparse.ArgumentTypeError(message)


def read_array(path):
    """Reads a `.npy` or `.csv` (comma-separated, optional header line) file as float32 `[N, D]`."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file.")
    try:
        if path.endswith(".npy"):
            array = np.load(path, allow_pickle=False)
        elif path.endswith(".csv"):
            array = _read_csv(path)
        else:
            raise UserError(f"{path}: expected a .npy or .csv file.")
        array = np.asarray(array, np.float32)
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read the data ({e}).") from e
    if array.ndim != 2 or array.shape[0] == 0:
        raise UserError(f"{path}: expected a 2-D array of shape [N, D] with N >= 1; "
                        f"got shape {array.shape}.")
    bad = ~np.isfinite(array)
    if bad.any():
        raise UserError(f"{path}: {int(bad.sum())} NaN or inf values (first in row "
                        f"{int(np.nonzero(bad)[0][0])}).")
    return array


def _read_csv(path):
    try:
        return np.loadtxt(path, delimiter=",", ndmin=2)
    except ValueError:
        return np.loadtxt(path, delimiter=",", ndmin=2, skiprows=1)


def read_data(spec, n=None, seed=0):
    """A dataset name (`kerasflows.datasets.NAMES`, drawing `n` points) or a data file.

    Returns `(array, dataset_name_or_None)`.
    """
    from kerasflows import datasets
    if spec in datasets.NAMES and not os.path.exists(spec):
        return datasets.load(spec, n=n, seed=seed), spec
    if not spec.endswith((".npy", ".csv")):
        raise UserError(f"{spec!r} is neither a dataset name ({', '.join(datasets.NAMES)}; "
                        f"with a context: {', '.join(datasets.CONDITIONAL_NAMES)}) nor a "
                        ".npy/.csv file.")
    return read_array(spec), None


def read_conditional_set(spec, n=None, seed=0, context=None):
    """`(x, context)` drawn from the conditional set DATA names (`ring_radius`,
    `digits_label`), or None when `spec` names none; `context` is the `--context`
    given, which such a set refuses (it brings its own)."""
    from kerasflows import datasets
    if spec not in datasets.CONDITIONAL_NAMES or os.path.exists(spec):
        return None
    if context is not None:
        raise UserError(f"{spec} brings its own context; --context is for data files.")
    return datasets.load_conditional(spec, n=n, seed=seed)


def output_folder(path):
    """Makes the folder of the output file `path`; a UserError naming the path when
    it cannot. `train`, `fit-target`, `sample` and `plot` call it for their outputs
    before any work is done (training is lost when its result cannot be written)."""
    folder = os.path.dirname(os.path.abspath(path))
    return _made_folder(folder, f"cannot write {path}: its folder {folder}")


def writable_folder(folder, option):
    """Makes the output folder `folder` (given as `option`, e.g. "--tensorboard");
    a UserError naming it when it cannot be made or written."""
    return _made_folder(folder, f"cannot write to {option} {folder}: the folder")


def _made_folder(folder, failure):
    """Makes `folder`; a UserError `failure` + " cannot be made (why)." or
    " is not writable." when it cannot be made or written."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise UserError(f"{failure} cannot be made ({e.strerror or e}).") from None
    if not os.access(folder, os.W_OK):
        raise UserError(f"{failure} is not writable.")
    return folder


def write_array(path, array):
    """Writes `array` to a `.npy` or `.csv` file, by the extension of `path`."""
    if path.endswith(".npy"):
        np.save(path, array)
    elif path.endswith(".csv"):
        np.savetxt(path, array, delimiter=",", fmt="%.8g")
    else:
        raise UserError(f"{path}: the output must end in .npy or .csv.")


def open_flow(path, unconditional=True):
    """Loads a flow with `kerasflows.load`; with `unconditional`, refuses a conditional one."""
    from kerasflows.loading import load
    flow = load(path)
    if unconditional and flow.context_dim is not None:
        raise UserError(f"{path}: a conditional flow (context_dim={flow.context_dim}); this "
                        "command handles unconditional flows only; use the Python API.")
    return flow


def add_context_argument(parser, rows):
    """`--context`: a conditional flow's context, numbers or a file."""
    parser.add_argument(
        "--context", metavar="C1,C2,... | FILE",
        help=f"a conditional flow's context: comma-separated numbers (one context for "
        f"every row) or a .npy/.csv file with {rows}")


def read_context(spec, flow, rows, what):
    """The `--context` `spec` for `flow` as float32 `[rows, C]`; None for an
    unconditional flow without one. `what` names one row (e.g. "sample")."""
    C = flow.context_dim
    if C is None:
        if spec is not None:
            raise UserError("--context: this flow is not conditional (context_dim=None).")
        return None
    if spec is None:
        raise UserError(f"a conditional flow (context_dim={C}): give --context, "
                        f"{_numbers(C)} or a .npy/.csv file.")
    if spec.endswith((".npy", ".csv")):
        context = read_array(spec)
    else:
        try:
            context = np.array([[float(v) for v in spec.split(",")]], np.float32)
        except ValueError:
            raise UserError(f"--context: expected {_numbers(C)} or a .npy/.csv file; "
                            f"received {spec!r}.") from None
        if not np.all(np.isfinite(context)):
            raise UserError(f"--context: expected finite numbers; received {spec!r}.")
    if context.shape[1] != C:
        raise UserError(f"--context has {context.shape[1]} values per row; the model expects "
                        f"context_dim={C}.")
    if len(context) not in (1, rows):
        raise UserError(f"--context has {len(context)} rows; expected 1 or {rows} (one per "
                        f"{what}).")
    return np.repeat(context, rows, axis=0) if len(context) == 1 else context


def _numbers(count):
    return "1 number" if count == 1 else f"{count} comma-separated numbers"


def check_columns(array, flow, what):
    """Raises a UserError unless `array` has the flow's event dimension."""
    if array.shape[1] != flow.event_dim:
        raise UserError(f"{what} has {array.shape[1]} columns; the model expects "
                        f"event_dim={flow.event_dim}.")
