"""Reading the commands' data: dataset names, `.npy`/`.csv` files and `--context`.

Every problem with a file is a `UserError` that names the file and, for a
CSV file (read by `csv_files`), the 1-based line and column of the bad field.
"""

import contextlib
import os

import numpy as np

from kerasflows.cli.common import UserError, plural
from kerasflows.cli.csv_files import (_csv_line, _header_line, _read_csv, check_column_names,
                                      column_list,
                                      model_column_names, model_dequantized_columns,
                                      name_list, read_column_names)

__all__ = ["read_array", "read_data", "read_conditional_set", "read_context", "check_columns",
           "check_labels", "label_embedding", "is_dataset_name", "plural", "read_column_names",
           "model_column_names", "model_dequantized_columns", "check_column_names",
           "column_list", "name_list", "row_place", "check_whole_numbers"]

#: The first bytes of every `.npy` file, and of a zip archive (a `.npz` file).
NPY_MAGIC, ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"

#: dtype kinds read as numbers: booleans, integers, unsigned integers, floats.
NUMERIC_KINDS = "biuf"

FLOAT32_MAX = float(np.finfo(np.float32).max)


def read_array(path, dtype=np.float32):
    """Reads a `.npy` or `.csv` (comma-separated, optional header line) file as `[N, D]` of
    `dtype`: float32 (what a flow computes in), or float64 for a float64 flow
    (`flow_data_dtype`), whose data keep their digits."""
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory, not a .npy or .csv file.")
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file.")
    if path.endswith(".npy"):
        array, where = _read_npy(path), (lambda row: row_place(path, row))
    elif path.endswith(".csv"):
        array, header = _read_csv(path)
        where = lambda row: f"line {_csv_line(path, header, row)}"
    else:
        raise UserError(f"{path}: expected a .npy or .csv file.")
    if array.ndim != 2 or 0 in array.shape:
        raise UserError(f"{path}: expected a 2-D array of shape [N, D] with N >= 1 and "
                        f"D >= 1; got shape {array.shape}.")
    if np.dtype(dtype) == np.float64:
        return _as_float64(path, array, where)
    return _as_float32(path, array, where)


def flow_data_dtype(flow):
    """The dtype a command reads `flow`'s data and contexts in: float64 for a flow of
    float64 weights (read as float32, its data lost their digits beyond float32's 7:
    an NLL 0.2 nats off for data of spread 2e-5 about 300), else float32."""
    return np.float64 if str(flow.dtype) == "float64" else np.float32


def _read_npy(path):
    """The array in a `.npy` file; numbers only (never unpickles)."""
    with open(path, "rb") as f:
        start = f.read(len(NPY_MAGIC))
        if start.startswith(ZIP_MAGIC):
            raise UserError(f"{path}: a .npz archive of arrays, not a .npy array; save the one "
                            "array with numpy.save.")
        if start != NPY_MAGIC:
            raise UserError(f"{path}: not a valid .npy array file (it does not start with the "
                            ".npy header; damaged, or another format).")
        f.seek(0)
        try:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            dtype = read_header(f)[2] if read_header else None
        except ValueError as e:
            raise UserError(f"{path}: not a valid .npy array file (damaged header: {e}).") from None
    if dtype is not None and dtype.kind not in NUMERIC_KINDS:
        raise UserError(f"{path}: holds {_kind_name(dtype)} (dtype {dtype}); expected real "
                        "numbers.")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read the data ({e}).") from None


def _kind_name(dtype):
    if dtype.hasobject:
        return "Python objects"
    return {"c": "complex numbers", "U": "strings", "S": "bytes", "M": "dates",
            "m": "time spans"}.get(dtype.kind, "records")


def _as_float32(path, array, where):
    """`array` as float32, refusing complex numbers, values beyond float32's range, NaN
    and inf; `where(row)` says where a row is in the file ("row 7", "line 9")."""
    if array.dtype.kind not in NUMERIC_KINDS:      # a .npy file whose header was not read
        raise UserError(f"{path}: holds {_kind_name(array.dtype)} (dtype {array.dtype}); "
                        "expected real numbers.")
    if array.dtype.kind == "f" and array.dtype.itemsize > 4:
        with np.errstate(invalid="ignore"):
            big = np.isfinite(array) & (np.abs(array) > FLOAT32_MAX)
        if big.any():
            row, column = (int(i) for i in np.argwhere(big)[0])
            raise UserError(f"{path}: {plural(int(big.sum()), 'value')} overflow float32 (largest "
                            f"{FLOAT32_MAX:.4g}); the first, {array[row, column]:g}, is in "
                            f"{where(row)}.")
    # wider than float32's 24-bit significand: float64, and integers of 32 bits or more
    # (16777216 and 16777217 are one float32)
    wide = array if ((array.dtype.kind == "f" and array.dtype.itemsize > 4)
                     or (array.dtype.kind in "iu" and array.dtype.itemsize >= 4)) else None
    array = array.astype(np.float32)
    bad = ~np.isfinite(array)
    if bad.any():
        raise UserError(f"{path}: {plural(int(bad.sum()), 'NaN or inf value')} (first in "
                        f"{where(int(np.nonzero(bad)[0][0]))}).")
    if wide is not None:
        _check_precision(path, wide, array)
    return array


def _as_float64(path, array, where):
    """`array` as float64, refusing what `_as_float32` refuses but float32's range, and
    integer columns beyond float64's precision (`_check_precision`)."""
    if array.dtype.kind not in NUMERIC_KINDS:
        raise UserError(f"{path}: holds {_kind_name(array.dtype)} (dtype {array.dtype}); "
                        "expected real numbers.")
    wide = array if array.dtype.kind in "iu" and array.dtype.itemsize >= 8 else None
    array = array.astype(np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        raise UserError(f"{path}: {plural(int(bad.sum()), 'NaN or inf value')} (first in "
                        f"{where(int(np.nonzero(bad)[0][0]))}).")
    if wide is not None:         # integers beyond 2^53
        _check_precision(path, wide, array)
    return array


def _check_precision(path, wide, array):
    """Refuses a column whose values differ, but not as float32 (or float64, `array`'s
    dtype): they differ only beyond its 7 (16) significant digits (1e8 + 0.001 and 1e8 +
    0.002; 2^60 and 2^60 + 1), and read as one value the flow would be told is the
    column's only one."""
    if array.ndim != 2 or len(array) < 2:
        return
    one = np.all(array == array[:1], axis=0) & ~np.all(wide == wide[:1], axis=0)
    if one.any():
        k = int(np.flatnonzero(one)[0])
        name, digits, shown = (("float64", 16, 17) if array.dtype == np.float64
                               else ("float32", 7, 9))
        raise UserError(
            f"{path}: column {k + 1}'s values differ only beyond {name}'s {digits} significant "
            f"digits, which the flow computes in: they all read as {array[0, k]:.{shown}g}. "
            "Subtract an offset from the column (or rescale it) so that its differences show.")


def row_place(spec, row):
    """Where row `row` (from 0) of the data `spec` is, as `read_array`'s messages say
    it: "line 9" of a CSV file (1-based, as an editor counts), "row 7 (from 0)" of a
    .npy file (as NumPy indexes it; its columns are named from 1, as a CSV file's,
    so the base is said), else "row 7"."""
    if isinstance(spec, str) and spec.endswith(".csv") and os.path.isfile(spec):
        return f"line {_csv_line(spec, _header_line(spec), row)}"
    if isinstance(spec, str) and spec.endswith(".npy"):
        return f"row {row} (from 0)"
    return f"row {row}"


def check_whole_numbers(spec, x, columns, names, why):
    """A UserError naming the first value of `x` (the rows of `spec`; column `names`
    or None) in `columns` that is not a whole number, by its line or row and
    column; `why` says why they must be."""
    from kerasflows.dequantization import first_not_whole
    found = first_not_whole(x, columns)
    if found is not None:
        row, k, value = found
        raise UserError(f"{spec}: {column_list([columns[k]], names)} holds {value!s} in "
                        f"{row_place(spec, row)}, not a whole number; {why}.")


def is_dataset_name(spec):
    """True for the name of a dataset or a conditional set (kerasflows.datasets)."""
    from kerasflows import datasets
    return spec in datasets.NAMES or spec in datasets.CONDITIONAL_NAMES


def read_data(spec, n=None, seed=None, dtype=np.float32):
    """A dataset name (`kerasflows.datasets.NAMES`, drawing `n` points with `seed`,
    default 0) or a data file (read in `dtype`, `read_array`); `n` is for dataset
    names only. A dataset name is always the dataset, even where a file or folder of
    that name exists (DATA files end in .npy or .csv).

    Returns `(array, dataset_name_or_None)`.
    """
    from kerasflows import datasets
    if spec in datasets.NAMES:
        with _option_n(n):
            return datasets.load(spec, n=n, seed=0 if seed is None else seed), spec
    if not spec.endswith((".npy", ".csv")):
        names = (f"a dataset name ({', '.join(datasets.NAMES)}; with a context: "
                 f"{', '.join(datasets.CONDITIONAL_NAMES)})")
        if os.path.isdir(spec):
            raise UserError(f"{spec!r} is a directory; DATA is {names} or a .npy/.csv file.")
        raise UserError(f"{spec!r} is neither {names} nor a .npy/.csv file.")
    if n is not None:
        raise UserError(f"--n draws points of a dataset name; {spec} is a file (all its rows "
                        "are used).")
    return read_array(spec, dtype), None


def read_conditional_set(spec, n=None, seed=0, context=None):
    """`(x, context)` drawn from the conditional set DATA names (`ring_radius`,
    `digits_label`), or None when `spec` names none; `context` is the `--context`
    given, which such a set refuses (it brings its own)."""
    from kerasflows import datasets
    if spec not in datasets.CONDITIONAL_NAMES:
        return None
    if context is not None:
        raise UserError(f"{spec} brings its own context; --context is for data files.")
    with _option_n(n):
        return datasets.load_conditional(spec, n=n, seed=seed)


@contextlib.contextmanager
def _option_n(n):
    """Reports a dataset's refusal of `n` (more rows than `digits` has) as one of --n."""
    try:
        yield
    except ValueError as e:
        if n is None:
            raise
        raise UserError(f"--n {n}: {e}") from e


def label_embedding(flow):
    """`kerasflows.layers.embedding.label_embedding`: the flow's `ClassEmbedding`, or
    None (imported when called, as TensorFlow is)."""
    from kerasflows.layers.embedding import label_embedding as embedding_of
    return embedding_of(flow)


def check_labels(flow, context, option, spec=None):
    """Refuses class labels the flow's `ClassEmbedding` does not know (it would give
    NaN) and labels that are not integers (it would round them), naming `option` and
    where the label is: its line in the CSV file `spec` (`row_place`), else its row."""
    embedding = label_embedding(flow)
    if embedding is None:
        return
    where = lambda row: row_place(spec, row) if spec is not None else f"row {row}"
    try:
        embedding.check_context(context, option, where=where)
    except ValueError as e:
        raise UserError(str(e)) from None
    fractional = np.asarray(context)[:, 0] != np.round(np.asarray(context)[:, 0])
    if fractional.any():
        row = int(np.argmax(fractional))
        raise UserError(f"{option}: labels for ClassEmbedding(num_classes="
                        f"{embedding.num_classes}) are the integers 0.."
                        f"{embedding.num_classes - 1}; received {context[row, 0]:g} in "
                        f"{where(row)} (labels are not rounded).")


def read_context(spec, flow, rows, what, model=None):
    """The `--context` `spec` for `flow` as `[rows, C]` in `flow_data_dtype(flow)`; None
    for an unconditional flow without one. `what` names one row (e.g. "sample"); a CSV
    file's header must name the context columns `model` (its path) was trained
    on, in their order (`check_column_names`)."""
    C = flow.context_dim
    if C is None:
        if spec is not None:
            raise UserError("--context: this flow is not conditional (context_dim=None).")
        return None
    if spec is None:
        raise UserError(f"a conditional flow (context_dim={C}): give --context, "
                        f"{_numbers(C)} or a .npy/.csv file.")
    if spec.endswith((".npy", ".csv")):
        context = read_array(spec, flow_data_dtype(flow))
        if model is not None:
            check_column_names(spec, model_column_names(model, "context_columns"),
                               f"{model} was trained on context")
    else:
        try:
            with np.errstate(over="ignore"):        # beyond float32: inf, refused below
                context = np.array([[float(v) for v in spec.split(",")]],
                                   flow_data_dtype(flow))
        except ValueError:
            raise UserError(f"--context: expected {_numbers(C)} or a .npy/.csv file; "
                            f"received {spec!r}.") from None
        if not np.all(np.isfinite(context)):
            dtype = np.dtype(flow_data_dtype(flow))
            raise UserError(f"--context: expected finite numbers within {dtype.name}'s range "
                            f"(magnitude up to {float(np.finfo(dtype).max):.4g}); received "
                            f"{spec!r}.")
    if context.shape[1] != C:
        raise UserError(f"--context has {plural(context.shape[1], 'value')} per row; the model "
                        f"expects context_dim={C}.")
    if len(context) not in (1, rows):
        expected = "1 row" if rows == 1 else f"1 or {rows}"
        raise UserError(f"--context has {plural(len(context), 'row')}; expected {expected} "
                        f"(one per {what}).")
    if spec.endswith((".npy", ".csv")):
        check_labels(flow, context, f"--context {spec}", spec)
    else:
        check_labels(flow, context, "--context")
    return np.repeat(context, rows, axis=0) if len(context) == 1 else context


def _numbers(count):
    return "1 number" if count == 1 else f"{count} comma-separated numbers"


def check_columns(array, flow, what):
    """Raises a UserError unless `array` has the flow's event dimension."""
    if array.shape[1] != flow.event_dim:
        raise UserError(f"{what} has {array.shape[1]} columns; the model expects "
                        f"event_dim={flow.event_dim}.")
