"""Checks of the arguments and inputs of flow layers and flows: numbers in
range, the event width, a context's rows, and mixed-precision policies."""

import math
import operator

import keras
import numpy as np
import tensorflow as tf

__all__ = ["real_number", "check_float", "check_positive_int", "check_bool", "check_event_dim",
           "split_mixed_policy", "float_policy", "check_float_compute", "context_rows", "shared_context",
           "nonfinite_rows", "nan_rows"]


def real_number(value):
    """`value` as a float if it is one real number (not a bool, a string or bytes,
    nor an array of several values); else NaN."""
    try:
        if isinstance(value, (bool, str, bytes)) or getattr(value, "ndim", 0) \
                or getattr(value, "dtype", None) == bool:
            raise TypeError
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def check_float(name, value, accept, expected):
    """`value` as a float, if it is one finite number (`real_number`: not a bool, a
    string or an array, which `float()` would take as `True` -> 1.0, `"3"` -> 3.0)
    for which `accept(value)` is true; else a ValueError saying it must be
    `expected` ("in [0, 1)", ...)."""
    number = real_number(value)
    if not (math.isfinite(number) and accept(number)):
        raise ValueError(f"`{name}` must be a finite number {expected}. Received: "
                         f"{name}={value!r}")
    return number


def check_positive_int(name, value, allow_none=False, minimum=1):
    """Returns `value` as an int, or raises a ValueError naming it."""
    if value is None and allow_none:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}") from None
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value}")
    return value


def check_bool(name, value):
    """`value` as a Python bool if it is one (or a NumPy bool); else a ValueError
    naming it (`"no"` and `None`, read as truth values, meant the opposite)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return bool(value)


def check_event_dim(owner, x, event_dim, what="inputs"):
    """Raises a ValueError if `x` is not a batch of `event_dim`-vectors.

    Only static shapes are checked, so this costs nothing at run time.
    """
    shape = tf.TensorShape(x.shape)
    if shape.rank is not None and (shape.rank != 2 or (
            shape[-1] is not None and event_dim is not None and shape[-1] != event_dim)):
        raise ValueError(
            f"{owner} expected {what} of shape (batch, {event_dim}); "
            f"received shape {tuple(shape.as_list())}.")


def split_mixed_policy(kwargs):
    """Keeps a flow's own arithmetic out of a mixed-precision policy.

    Returns `(kwargs, mixed)`: for a mixed policy (`"mixed_float16"`,
    `"mixed_bfloat16"`: compute dtype != variable dtype), whether passed as
    `dtype=` or set globally with `keras.config.set_dtype_policy`, `kwargs`
    with `dtype` set to the variable dtype (float32) and `mixed` the mixed
    policy, which the layer's conditioner network then uses; otherwise
    `(kwargs, None)`. The transforms, log-dets and base log-densities of a
    flow thus stay in float32 (computed in float16, log-densities of points
    far from the data became -inf or NaN).
    """
    dtype = kwargs.get("dtype")
    policy = keras.dtype_policies.get(dtype) if dtype is not None else keras.config.dtype_policy()
    variable, compute = policy.variable_dtype, policy.compute_dtype
    if compute == variable or not (keras.backend.is_float_dtype(compute)
                                   and keras.backend.is_float_dtype(variable)):
        return kwargs, None
    return {**kwargs, "dtype": variable}, policy


def float_policy(name, value):
    """The Keras dtype policy `value` (a name such as `"mixed_bfloat16"`, or a policy),
    if it computes and keeps its variables in float dtypes; else a ValueError naming
    `name` (an int32 conditioner's weights get no gradients)."""
    policy = keras.dtype_policies.get(value)
    if not (keras.backend.is_float_dtype(policy.compute_dtype)
            and keras.backend.is_float_dtype(policy.variable_dtype)):
        shown = value if isinstance(value, str) else policy.name
        raise ValueError(
            f"`{name}` must be a float dtype policy (float32, float64, or a mixed policy "
            f"such as 'mixed_bfloat16'). Received: {name}={shown!r}")
    return policy


def check_float_compute(computes, dtype):
    """Raises a ValueError unless the compute dtype `dtype` is a float; `computes` says
    whose it is ("A flow computes densities"): a Flow's and its layers'."""
    if not keras.backend.is_float_dtype(dtype):
        raise ValueError(f"{computes} in a float dtype (float32, float64, or a mixed policy "
                         f"such as 'mixed_float16'). Received: dtype={dtype!r}")


def context_rows(context, rows, mismatch):
    """`context` for a batch of `rows` rows: as it is, or its one row repeated
    (a `[1, C]` context shared by every row). A context whose known row count
    is neither raises `ValueError(mismatch(its_rows))`. Rows unknown at
    tracing time are left to the ops that use them."""
    if context is None or rows is None:
        return context
    have = context.shape[0]
    if have is None or have == rows:
        return context
    if have != 1:
        raise ValueError(mismatch(have))
    return tf.repeat(context, rows, axis=0)


def shared_context(context, x):
    """`context` for the rows of `x` inside a conditioner: a `[1, C]` context
    (one shared by every row, as `Flow.get_bijector` takes it) broadcast to
    `x`'s rows, any other as it is. A context of statically known rows other
    than one (every context a `Flow` call passes on) goes through untouched;
    where either's rows are known only at run time (a function traced for
    contexts of any rows), the broadcast is made then (an `[N, C]` context of
    N rows is itself; one of other rows raises)."""
    if context is not None and None not in (context.shape[0], x.shape[0]) \
            and context.shape[0] not in (1, x.shape[0]):
        # a layer's bijector given another context than its inputs' rows: TensorFlow's
        # concat said "Dimension 0 in both shapes must be equal"
        raise ValueError(f"The context has {context.shape[0]} rows and the inputs "
                         f"{x.shape[0]}: give one context row per input row, or one row "
                         "shared by all.")
    if context is None or x.shape[0] == 1 or (
            context.shape[0] is not None and context.shape[0] != 1):
        return context
    return tf.broadcast_to(context, tf.stack([tf.shape(x)[0], tf.shape(context)[1]]))


def nonfinite_rows(t):
    """Whether each row of `t` `[N, K]` holds a NaN or inf: `[N]` bools."""
    return tf.reduce_any(tf.logical_not(tf.math.is_finite(t)), axis=-1)


def nan_rows(bad, t):
    """`t` (`[N]` or `[N, K]`) with NaN in the rows where `bad` (`[N]`, or `[1]` for
    all) is true."""
    return tf.where(bad if t.shape.rank == 1 else bad[:, None],
                    tf.constant(float("nan"), t.dtype), t)
