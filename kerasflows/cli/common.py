"""Helpers shared by the subcommands: option types, output folders, opening models."""

import argparse
import contextlib
import json
import math
import os
import re
import sys

import numpy as np

__all__ = ["UserError", "HelpFormatter", "plural", "write_array", "output_folder", "open_flow",
           "positive_int", "positive_float", "fraction", "units", "seed", "spline_bins",
           "add_seed_argument", "add_spline_arguments", "check_recipe_options",
           "add_direction_argument", "writable_folder", "NEGATIVE_VALUE",
           "progress_verbosity", "add_context_argument", "is_saved_model",
           "read_json_file", "SEED_MAX", "check_outputs", "check_paths_given", "json_safe",
           "csv_field", "is_number_field", "check_folder_can_be_made", "check_output_file",
           "write_output", "written_or_kept", "save_atomically", "write_error_reason"]

#: The largest `--seed`: seeds go to NumPy, to Keras and to the int32 seed of sampling.
SEED_MAX = 2**31 - 1


class UserError(Exception):
    """A mistake in the command line or its inputs; printed as one line, exit status 2."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it is None/False (those say it in their help)
    or the option's `show_default` is False; a list default in the form the option
    takes it (`64,64`)."""

    def _get_help_string(self, action):
        if (action.default is None or action.default is False
                or not getattr(action, "show_default", True)):
            return action.help
        if isinstance(action.default, list):
            return f"{action.help} (default: {','.join(map(str, action.default))})"
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


def seed(text):
    """argparse type: a seed, an integer in 0..2**31-1."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= SEED_MAX:
        raise _arg_error(f"expected an integer in 0..{SEED_MAX} (2**31-1), got {text!r}")
    return value


def add_seed_argument(parser, help, default=0):
    """`--seed`, an integer in 0..2**31-1 (`help` says what it seeds)."""
    parser.add_argument("--seed", type=seed, default=default,
                        help=f"{help}; an integer in 0..2**31-1")


def spline_bins(text):
    """argparse type: a number of spline bins, an integer >= 2."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise _arg_error(f"expected an integer >= 2, got {text!r}")
    return value


def add_spline_arguments(parser):
    """`--bins` and `--bound` of the spline recipes."""
    parser.add_argument("--bins", type=spline_bins, default=None,
                        help="spline bins, an integer >= 2 (nsf, nsf_ar only; default 8)")
    parser.add_argument("--bound", type=positive_float, default=None,
                        help="splines act on [-bound, bound], bound > 0 (nsf, nsf_ar only; "
                        "default 5.0)")


def check_recipe_options(recipe, bins, bound, direction, mask=None):
    """Refuses `--bins`/`--bound` for a recipe without splines, `--direction`
    for one without a direction setting and `--mask` for one without coupling
    masks (kerasflows.recipes)."""
    from kerasflows.recipes import DIRECTION_SETTINGS, MASK_RECIPES, SPLINE_RECIPES
    if mask is not None and recipe not in MASK_RECIPES:
        raise UserError(f"--mask applies to the coupling recipes ({', '.join(MASK_RECIPES)}) "
                        f"only; received --recipe {recipe} --mask {mask}.")
    given = [f"--{name} {value:g}" for name, value in (("bins", bins), ("bound", bound))
             if value is not None]
    if given and recipe not in SPLINE_RECIPES:
        raise UserError(f"--bins and --bound apply to the spline recipes "
                        f"({', '.join(SPLINE_RECIPES)}) only; received --recipe {recipe} "
                        f"{' '.join(given)}.")
    if direction is not None and recipe not in DIRECTION_SETTINGS:
        raise UserError(f"--direction applies to the recipes ({', '.join(DIRECTION_SETTINGS)}) "
                        f"only; received --recipe {recipe} --direction {direction}.")


def _arg_error(message):
    return argparse.ArgumentTypeError(message)


def output_folder(path, option):
    """Makes the folder of the output file `path` (given as `option`, e.g. "--out"); a
    UserError naming them when it cannot. `train` and `fit-target` call it for their
    outputs before training (which is lost when its result cannot be written);
    `sample` and `plot` check theirs without making it (`check_output_file`)."""
    folder = os.path.dirname(os.path.abspath(path))
    return _made_folder(folder, f"cannot write {option} {path}: its folder {folder}")


def check_paths_given(pairs):
    """Refuses an option `[(option, value)]` given as an empty path (`--out ""`),
    which the defaults of an unset option would otherwise stand in for."""
    for option, value in pairs:
        if value is not None and not value.strip():
            raise UserError(f"{option} needs a path; received {value!r}.")


def check_outputs(outputs, inputs=(), folders=()):
    """Refuses output files `[(option, path)]` that are folders, that name one file
    twice, or that would overwrite one of the `inputs` `[(option, path)]` a command
    reads (a report written over the model or the training data lost it, after a
    run that said it succeeded), and output `folders` `[(option, path)]` (a
    checkpoint folder) that another output names too (the model saved over the
    checkpoint folder was lost); None paths are skipped. `train` and `fit-target`
    call it before any work, beside `output_folder`."""
    written = {}
    for option, path in outputs:
        if path is None:
            continue
        if os.path.isdir(path):
            raise UserError(f"{option} {path} is a folder; expected a file name.")
        key = os.path.realpath(path)
        if key in written:
            raise UserError(f"{written[key][0]} and {option} both name {path}; give each "
                            "its own file.")
        written[key] = option, path
    for option, path in folders:
        key = None if path is None else os.path.realpath(path)
        if key in written:
            raise UserError(f"{written[key][0]} and {option} both name {path}; give each "
                            "its own path.")
        if key is not None:
            written[key] = option, path
    for option, path in inputs:
        if path is not None and os.path.isfile(path) and os.path.realpath(path) in written:
            output, given = written[os.path.realpath(path)]
            raise UserError(f"{output} {given} would overwrite {option} {path}, which this "
                            "command reads; give another file name.")


def json_safe(value):
    """`value` (dicts, lists, numbers) with every NaN or infinite float as None:
    JSON has no NaN, and `json.dumps` writes a bare `NaN` that strict readers
    (JavaScript, jq, `json.loads` with `parse_constant`) refuse."""
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


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


def plural(count, noun):
    """`"1 value"`, `"2 values"`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def is_number_field(field):
    """True when `np.loadtxt` reads `field` as a number: Python's `float` with the white
    space around it stripped (as NumPy strips it), in ASCII only (`float` also reads
    '\\uff11' and '\\u0661') and without '_' (`float` reads 1_000)."""
    text = field.strip()
    if not text.isascii() or "_" in text:
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_field(name):
    """`name` as a field of a CSV header line: in double quotes (a quote doubled) when
    it holds a comma, a quote or a '#', which would split it or start a comment, or
    reads as a number (`is_number_field`: a header of names "1", "2" written bare
    was read back as a row of data)."""
    if not any(mark in name for mark in ',"#') and not is_number_field(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def check_folder_can_be_made(folder, failure):
    """A UserError `failure` + " ..." when the folder `folder` cannot be written: its
    nearest existing folder (itself, or the one it would be made in) is a file or
    not writable. Makes nothing, so a command refused later leaves no folder."""
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"{failure}: {existing} is a file.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{failure}: the folder {existing} is not writable.")


def check_output_file(option, path, inputs=()):
    """Refuses, before any work and making nothing, the output file `path` of
    `option` when it is a folder, would overwrite one of the `inputs`
    `[(option, path)]` or cannot be made (`check_folder_can_be_made`);
    `write_output` makes its folder when it writes it."""
    check_outputs([(option, path)], inputs)
    check_folder_can_be_made(os.path.dirname(os.path.abspath(path)),
                             f"cannot write {option} {path}")


def write_output(path, write):
    """Writes the file `path` through `write(f)`, `f` a new binary file beside it
    that is renamed over `path` once written, and makes `path`'s missing folders
    first: a write that fails (a full disk) leaves no half-written file and no
    new folder, and keeps the file `path` named before (through a symbolic link,
    the file it names; a file replaced keeps its permissions). The OSError of a
    failed write names `path` (`kerasflows.files.replace_file`)."""
    from kerasflows.files import replace_file
    replace_file(path, write)


def save_atomically(flow, out, record=None):
    """Writes `flow` (and its training `record`) to a hidden file beside `out`, then
    renames it over `out`: a reader (the visualizer following the file) never sees a
    partial file, and a crash while saving keeps the previous one
    (`kerasflows.files.replace_file`)."""
    from kerasflows.files import replace_file
    from kerasflows.loading import write_training_record

    def save(name):
        flow.save(name)
        if record is not None:
            write_training_record(name, record)
    replace_file(out, save, by_name=True, tail=".saving.keras")   # Keras saves to .keras only


def write_error_reason(error):
    """Why a write failed, in words: an OSError's `strerror` ("No space left on
    device"; NumPy's own short-write message, as its first argument), or a
    TensorFlow file error's message (those are no OSError)."""
    if not isinstance(error, OSError):
        return getattr(error, "message", None) or str(error) or type(error).__name__
    return error.strerror or (error.args[0] if error.args else type(error).__name__)


@contextlib.contextmanager
def written_or_kept(option, path):
    """Turns the OSError of writing `option`'s output `path` with `write_output`
    into a UserError naming both, and saying that the file there before is kept."""
    existed = os.path.isfile(path)
    try:
        yield
    except OSError as e:
        kept = "the file there before is kept" if existed else "nothing was written"
        raise UserError(f"cannot write {option} {path}: {write_error_reason(e)}; "
                        f"{kept}.") from None


def write_array(path, array, column_names=None):
    """Writes `array` to a `.npy` or `.csv` file, by the extension of `path`
    (`write_output`); a CSV file starts with a header line of `column_names` when
    given (`csv_field`)."""
    if path.endswith(".npy"):
        write_output(path, lambda f: np.save(f, array))
    elif path.endswith(".csv"):
        header = ",".join(map(csv_field, column_names)) if column_names else ""
        # UTF-8 as the CSV files read are (np.savetxt to a binary file wrote Latin-1)
        # 9 significant digits: every float32 reads back as itself (8 changed 18 of
        # 4,000 sampled values); 17 for a float64 flow's numbers
        digits = 17 if np.asarray(array).dtype == np.float64 else 9
        write_output(path, lambda f: np.savetxt(f, array, delimiter=",", fmt=f"%.{digits}g",
                                                header=header, comments="", encoding="utf-8"))
    else:
        raise UserError(f"{path}: the output must end in .npy or .csv.")


def is_saved_model(path):
    """True for a folder that holds an exported SavedModel (`saved_model.pb`, or
    numbered version folders) rather than a `.keras` model."""
    return os.path.isdir(path) and not os.path.isfile(os.path.join(path, "flow.keras")) and (
        os.path.isfile(os.path.join(path, "saved_model.pb"))
        or any(d.isdigit() for d in os.listdir(path)))


def open_flow(path):
    """Loads the flow of a `.keras` file or a model folder with `kerasflows.load`."""
    from kerasflows.loading import load
    if is_saved_model(path):
        raise UserError(f"{path} is an exported SavedModel (for TF Serving): `kerasflows info` "
                        "lists its signatures; evaluate, sample, plot and export take the "
                        ".keras model (a .keras file, or a model folder such as "
                        "saved_models/moons).")
    return load(path)


def read_json_file(path):
    """The JSON object in `path`; a UserError naming the file when it is not one."""
    try:
        with open(path) as f:
            value = json.load(f)
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e}).") from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: expected a JSON object {{...}}; found a "
                        f"{type(value).__name__}.")
    return value


def add_context_argument(parser, rows):
    """`--context`: a conditional flow's context, numbers or a file."""
    parser.add_argument(
        "--context", metavar="C1,C2,... | FILE",
        help=f"a conditional flow's context: comma-separated numbers (one context for "
        f"every row) or a .npy/.csv file with {rows}; for a model whose context is a class "
        f"label (a ClassEmbedding), integer labels it knows (not rounded)")
