"""Checks of data values against a flow: finite numbers (`check_finite`), and
within the open domain of the flow's data-end layer (`FlowLayer.data_domain`:
`check_domain` for arrays, `asserted_domain` for the batches of a `tf.data`
stream). `kerasflows.fit_data` runs them for `Flow.fit`, `evaluate` and
`predict`, and `train_flow` for its arrays."""

import math

import keras
import numpy as np
import tensorflow as tf

from kerasflows.data_warnings import numeric

__all__ = ["check_finite", "check_domain", "data_end_domain", "asserted_domain",
           "raising_unless", "subnormal_below"]


def check_finite(name, array, dtype=None):
    """Raises ValueError if a NumPy/tensor `array` holds NaN or inf, or, given the
    `dtype` the flow computes in (which Keras casts the data to), a value beyond its
    range: float64 data of 1e39 became inf in float32, and one such row made every
    weight NaN without a word."""
    a = np.asarray(array)
    if not numeric(a.dtype):
        raise ValueError(f"{name} must be numeric; received dtype {a.dtype}.")
    bad = ~np.isfinite(a)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise ValueError(f"{name} contains {int(bad.sum())} NaN or inf values "
                         f"(first in rows {rows[:5].tolist()}); remove or impute them "
                         "first.")
    if dtype is None or a.dtype.kind not in "iuf" or a.dtype == np.dtype(tf.as_dtype(
            dtype).as_numpy_dtype) or a.size == 0:
        return
    limit = float(tf.as_dtype(dtype).max)
    big = np.abs(a.astype(np.float64) if a.dtype.kind != "f" else a) > limit
    if big.any():
        rows = np.unique(np.nonzero(big)[0])
        raise ValueError(f"{name} holds {int(big.sum())} values beyond {tf.as_dtype(dtype).name}"
                         f"'s range (first in rows {rows[:5].tolist()}; it holds magnitudes "
                         f"up to {limit:.4g}): the flow computes in "
                         f"{tf.as_dtype(dtype).name}, where they overflow to inf and make "
                         "every weight NaN; rescale them.")


def data_end_domain(flow):
    """`(layer, low, high)`: the flow's data-end layer (the last; `inverse` reads the
    data first) and its open `data_domain`, or None when that is all reals."""
    if not flow.flow_layers:
        return None
    layer = flow.flow_layers[-1]
    low, high = layer.data_domain
    return None if low == -math.inf and high == math.inf else (layer, low, high)


def _domain_words(layer, low, high):
    return (f"outside ({low:g}, {high:g}), the domain of the flow's data end, "
            f"{type(layer).__name__} '{layer.name}'")


def check_domain(flow, name, x, keras_cast=True):
    """Raises ValueError if a value of `x` `[N, D]` lies outside the flow's data-end
    domain (`data_domain`) as the flow sees it: in the layer's dtype, after
    Keras' cast of float arrays to `floatx` when `keras_cast`."""
    end = data_end_domain(flow)
    if end is None:
        return
    layer, low, high = end
    a = np.asarray(x)
    if a.ndim != 2:     # the flow's shape check names it
        return
    seen = a
    if keras_cast and a.dtype.kind == "f":     # Keras' array adapter casts floats so
        seen = a.astype(keras.backend.floatx(), copy=False)
    seen = seen.astype(layer.compute_dtype, copy=False)
    read = _flushed(seen)
    bad = ~((read > low) & (read < high))
    if bad.any():
        row, column = np.argwhere(bad)[0]
        value, rounded = a[row, column], read[row, column]
        subnormal = rounded == 0 and seen[row, column] != 0
        cast = "" if float(value) == float(rounded) else f" ({rounded} as {seen.dtype}" + (
            ", a subnormal number, which TensorFlow reads as 0 on CPUs)" if subnormal else ")")
        count = int(bad.sum())
        raise ValueError(
            f"{name}: row {row}, column {column} is {value}{cast}, "
            f"{_domain_words(layer, low, high)} (its inverse is not finite there, and one "
            f"such value makes every weight NaN in training); {count} such "
            f"value{'s' if count > 1 else ''} in all: clip values on its edge into it "
            "first.")


def subnormal_below(dtype):
    """The smallest normal number of the float `dtype`, below which TensorFlow's CPU
    kernels read a value as 0 (denormals-are-zero: `1e-310 > 0` is False in
    float64, as is `1e-40 > 0` in float32 and bfloat16), or 0 for float16, which
    they compute in float32, and for other dtypes."""
    dtype = np.dtype(dtype)
    if dtype == np.float16 or dtype.kind not in "fV":
        return 0.0
    # bfloat16 has float32's exponents, so its smallest normal number, 2^-126
    return float(np.finfo(np.float64 if dtype == np.float64 else np.float32).tiny)


def _flushed(seen):
    """The array `seen` with its subnormal numbers as 0, as the flow reads them (a
    float64 1e-310 was in (0, 1) to NumPy, and its log was -inf in the flow:
    every weight NaN after one step)."""
    tiny = subnormal_below(seen.dtype)
    return np.where(np.abs(seen) < tiny, np.zeros((), seen.dtype), seen) if tiny else seen


def asserted_domain(flow, x, what):
    """`x` (a `tf.data` batch's) behind a check that its values, in the data-end
    layer's dtype, lie in the flow's data-end domain (`check_domain`): reading a
    batch with one outside raises `InvalidArgumentError` naming `what`, the
    layer and the domain (`raising_unless`)."""
    end = data_end_domain(flow)
    if end is None:
        return x
    layer, low, high = end
    seen = tf.cast(x, layer.compute_dtype)
    tiny = subnormal_below(seen.dtype.as_numpy_dtype)
    if tiny:        # subnormal numbers as 0, as _flushed (on CPUs, TF reads them so)
        seen = tf.where(tf.abs(seen) < tiny, tf.zeros_like(seen), seen)
    inside = tf.reduce_all((seen > low) & (seen < high))
    flag = raising_unless(
        inside, f"{what} hold values {_domain_words(layer, low, high)}, in a batch of the "
        "tf.data stream (its inverse is not finite there, and one such value makes every "
        "weight NaN in training)")
    with tf.control_dependencies([flag]):
        return tf.identity(x)


def raising_unless(valid, message):
    """An op raising `InvalidArgumentError` with `message` when `valid` (a scalar bool
    tensor) is False: a `check_numerics` on a flag, whose message is printed as
    given (`tf.debugging.Assert` escapes quotes: "fit\\'s"). TensorFlow ends it
    with ": Tensor had NaN values", so the message says that NaN is the flag's."""
    return tf.debugging.check_numerics(
        tf.where(valid, 0.0, math.nan),
        f"{message} [raised through a NaN flag: the NaN named next is the check's, not "
        "the data's]")
