"""Checks and reshaping of the data given to `Flow.fit`, done once before training."""

import numpy as np
import tensorflow as tf

__all__ = ["prepare_fit_data", "check_finite"]


def check_finite(name, array):
    """Raises ValueError if a NumPy/tensor `array` holds NaN or inf."""
    a = np.asarray(array)
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} must be numeric; received dtype {a.dtype}.")
    bad = ~np.isfinite(a)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise ValueError(f"{name} contains {int(bad.sum())} NaN or inf values "
                         f"(first in rows {rows[:5].tolist()}); remove or impute them "
                         "before training.")


def _is_array(v):
    return isinstance(v, (np.ndarray, tf.Tensor, list)) or hasattr(v, "__array__")


def _check_arrays(flow, data, name):
    """Validates `data` (x or (x, context)) and returns it packed for Keras."""
    if flow.context_dim is not None:
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise ValueError(f"This flow is conditional (context_dim={flow.context_dim}): "
                             f"give {name} as (x, context).")
        x, c = data
        check_finite(name, x)
        check_finite(f"{name} context", c)
        if len(x) != len(c):
            raise ValueError(f"{name}: x has {len(x)} rows but context has {len(c)}.")
        flow._prepare(np.asarray(x[:1]), np.asarray(c[:1]))
        return (x, c)
    check_finite(name, data)
    flow._prepare(np.asarray(data[:1]))
    return data


def prepare_fit_data(flow, x, y, batch_size, validation_data):
    """Returns `(x, validation_data, first_batch)` ready for `keras.Model.fit`.

    `first_batch` is `(x_batch, context_batch)` for data-dependent init, or
    None when the data come as a `tf.data.Dataset` that was not inspected.
    """
    if y is not None:
        raise ValueError("Flow.fit trains by maximum likelihood and takes no targets: "
                         "call fit(x) (or fit((x, context)) for a conditional flow). "
                         f"Received y of type {type(y).__name__}.")
    if x is None:
        raise ValueError("Flow.fit needs training data x.")
    first = None
    if isinstance(x, tf.data.Dataset):
        if flow.context_dim is not None:
            x = x.map(lambda *e: (tuple(e),) if len(e) == 2 else e)
        batch = next(iter(x.take(1)))
        batch = batch[0] if isinstance(batch, tuple) and len(batch) == 1 else batch
        first = tuple(batch) if flow.context_dim is not None else (batch, None)
    else:
        x = _check_arrays(flow, x, "training data")
        n = batch_size or 32
        first = (x[0][:n], x[1][:n]) if flow.context_dim is not None else (x[:n], None)
    if validation_data is not None and not isinstance(validation_data, tf.data.Dataset):
        if flow.context_dim is not None:
            validation_data = (tuple(_check_arrays(flow, validation_data, "validation data")),)
        else:
            if isinstance(validation_data, tuple) and len(validation_data) == 1:
                validation_data = validation_data[0]
            validation_data = (_check_arrays(flow, validation_data, "validation data"),)
    elif isinstance(validation_data, tf.data.Dataset) and flow.context_dim is not None:
        validation_data = validation_data.map(lambda *e: (tuple(e),) if len(e) == 2 else e)
    return x, validation_data, first
