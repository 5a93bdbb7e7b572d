"""What `Flow.fit` warns of in array training data before it starts: columns
on which maximum likelihood has no optimum (`degenerate_columns`: one value
in every row, or whole numbers only) and, for a flow that does not
standardise its data (or, without a context encoder, its context), columns
far from the unit scale its layers assume (`off_scale_columns`).
`kerasflows train` refuses or warns of the first itself and standardises
data files and their contexts (`--standardize`)."""

import warnings

import numpy as np

__all__ = ["degenerate_columns", "off_scale_columns", "standardizes", "warn_about_columns",
           "UNIT_SCALE", "FRACTIONS_BELOW"]

#: A column whose standard deviation lies outside [1 / UNIT_SCALE, UNIT_SCALE],
#: or whose mean is further than UNIT_SCALE from 0, is far from the unit scale
#: that the conditioners' initialisation and a spline's `[-bound, bound]`
#: (default 5) assume.
UNIT_SCALE = 20.0
#: float32 holds fractions only of numbers below 2**23 in magnitude: beyond, a column
#: holds whole numbers whatever it measured, and noise in [0, 1) added to it is lost.
#: A column of whole numbers counts as such (`degenerate_columns`) below it.
FRACTIONS_BELOW = 2 ** 23


def numeric(dtype):
    """Whether an array of `dtype` holds numbers: NumPy's numeric kinds and the
    float types NumPy knows through `ml_dtypes` (bfloat16, TensorFlow's own),
    which `np.number` does not include."""
    dtype = np.dtype(dtype)
    return (np.issubdtype(dtype, np.number)
            or (dtype.kind == "V" and dtype.name in _ML_FLOATS))


#: `ml_dtypes`' float types, as NumPy names them (kind "V", not `np.number`).
_ML_FLOATS = frozenset({"bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
                        "float8_e5m2fnuz", "float8_e4m3b11fnuz"})

def degenerate_columns(x):
    """`(constant, whole)`: the indices of the columns of `x` `[N, D]` (N >= 2; else
    none) that hold one value in every row, and of the others that hold whole
    numbers only, below `FRACTIONS_BELOW` in magnitude. Maximum likelihood has no
    optimum on either: the flow can narrow onto each value and the NLL fall
    without bound (at once on a constant column; on whole numbers once the flow
    resolves them, unless uniform noise in [0, 1) is added first:
    dequantization). From `FRACTIONS_BELOW` on, float32 holds only whole numbers (a
    Unix time in seconds, any float32 reading of 1e9): not counted."""
    x = np.asarray(x)
    if x.ndim != 2 or len(x) < 2 or not numeric(x.dtype):
        return np.zeros(0, int), np.zeros(0, int)
    constant = np.all(x == x[0], axis=0)
    small = np.all(np.abs(x) < FRACTIONS_BELOW, axis=0)
    whole = np.all(x == np.round(x), axis=0) & ~constant & small
    return np.flatnonzero(constant), np.flatnonzero(whole)


def off_scale_columns(x):
    """The indices of the non-constant columns of `x` `[N, D]` whose standard
    deviation is outside [1 / UNIT_SCALE, UNIT_SCALE] or whose mean is further
    than UNIT_SCALE from 0 (none for N < 2)."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) < 2:
        return np.zeros(0, int)
    mean, std = x.mean(0), x.std(0)
    far = (std > UNIT_SCALE) | (std < 1 / UNIT_SCALE) | (np.abs(mean) > UNIT_SCALE)
    return np.flatnonzero(far & (std > 0))


def standardizes(flow):
    """Whether `flow`'s data end is a layer that sets itself to the data's scale
    (`ActNorm`, as `standardize=True` puts there, or `BatchNorm`)."""
    from kerasflows.layers.normalization import ActNorm, BatchNorm
    return bool(flow.flow_layers) and isinstance(flow.flow_layers[-1], (ActNorm, BatchNorm))


def _listed(columns):
    return ", ".join(str(int(k)) for k in columns[:5]) + (", ..." if len(columns) > 5 else "")


def _stats(x, columns):
    x = np.asarray(x, np.float64)
    return "; ".join(f"column {int(k)}: mean {x[:, k].mean():.3g}, std {x[:, k].std():.3g}"
                     for k in columns[:3]) + ("; ..." if len(columns) > 3 else "")


def warn_about_columns(flow, x, context=None):
    """`fit`'s warnings about the training data `x` `[N, D]` and, for a conditional
    flow without a context encoder, its `context` `[N, C]` (array data)."""
    if np.ndim(x) == 2 and len(x) == 1:
        warnings.warn("Flow.fit: the training data are one row; a density fitted to a single "
                      "point has no maximum, and the loss will fall without bound (then NaN) "
                      "as the flow narrows onto it. Give it more rows.", UserWarning,
                      stacklevel=4)
        return
    constant, whole = degenerate_columns(x)
    if len(constant):
        warnings.warn(f"Flow.fit: column(s) {_listed(constant)} of the training data hold one "
                      "value in every row; a density over them has no maximum, and the loss "
                      "will fall without bound (then NaN) as the flow narrows onto it. Drop "
                      "them.", UserWarning, stacklevel=4)
    if len(whole):
        warnings.warn(f"Flow.fit: column(s) {_listed(whole)} of the training data hold whole "
                      "numbers only; a continuous density can narrow onto each value, and "
                      "the loss fall without bound as training goes on. Add uniform noise in "
                      "[0, 1) to them, new each epoch (dequantization: fit "
                      "kerasflows.dequantization.dequantized_dataset(x, batch_size)), unless "
                      "they are readings that merely look whole.", UserWarning, stacklevel=4)
    checks = [("column(s) {} of the training data are", x, not standardizes(flow),
               "which the layers' initialisation and spline ranges assume; training will be "
               "slow or stall. Build the flow with standardize=True (kerasflows.models) or "
               "end it in an ActNorm, or standardise the data."),
              ("context column(s) {} are", context,
               context is not None and getattr(flow, "context_encoder", None) is None,
               "and the layers' conditioners take the context as it is; training will be "
               "slow or stall. Give the flow context_encoder=keras.layers.Normalization() "
               "adapted to the contexts (norm.adapt(context)), or standardise them.")]
    for which, data, check, advice in checks:
        far = off_scale_columns(data) if check else ()
        if len(far):
            warnings.warn(f"Flow.fit: {which.format(_listed(far))} far from a unit scale "
                          f"({_stats(data, far)}), {advice}", UserWarning, stacklevel=4)
