"""Checks of the data given to `Flow.fit`, `evaluate` and `predict` (done once,
before Keras' loop), and the forms Keras is handed."""

import itertools
import math

import keras
import numpy as np
import tensorflow as tf

from kerasflows.data_checks import (asserted_domain, check_domain, check_finite, data_end_domain,
                                     raising_unless)
from kerasflows.data_warnings import degenerate_columns, numeric, warn_about_columns
from kerasflows.layers.base import check_event_dim
from kerasflows.layers.embedding import label_embedding

__all__ = ["check_finite", "check_domain", "data_end_domain", "prepare_fit_data",
           "prepare_eval_data", "weights_for_keras", "degenerate_columns", "is_stream"]

#: The `tf.data` element spec of a None (`(x, None, w)`'s middle item).
_NONE_SPEC = type(tf.type_spec_from_value(None))


def _is_array(v):
    return isinstance(v, (np.ndarray, tf.Tensor, list)) or hasattr(v, "__array__")


def _check_rows(name, x):
    if len(x) == 0:
        raise ValueError(f"{name} has no rows (shape {tuple(np.shape(x))}); give at least "
                         "one example.")


def _as_array(data):
    """A (nested) Python list of numbers as a NumPy array; anything else as it is."""
    return np.asarray(data) if isinstance(data, list) else data


def _check_arrays(flow, data, name, finite=True):
    """Validates `data` (x or (x, context)) and returns it packed for Keras; with
    `finite=False`, NaN and inf are let through."""
    check = ((lambda name, a: check_finite(name, a, flow.compute_dtype)) if finite
             else lambda name, a: None)
    if flow.context_dim is not None:
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise ValueError(f"This flow is conditional (context_dim={flow.context_dim}): "
                             f"give {name} as (x, context).")
        x, c = (_as_array(d) for d in data)
        check(name, x)
        check(f"{name} context", c)
        _check_rows(name, x)
        if len(x) != len(c):
            raise ValueError(f"{name}: x has {len(x)} rows but context has {len(c)}.")
        check_event_dim("Flow", np.asarray(x), flow.event_dim)
        check_event_dim("Flow", np.asarray(c), flow.context_dim, what="context")
        embedding = label_embedding(flow)   # a ClassEmbedding reading the context: labels in range
        if finite and embedding is not None:
            embedding.check_context(np.asarray(c), f"{name} context")
        if finite:
            check_domain(flow, name, x)
        return (x, c)
    # a list holding arrays of rows is a list of inputs, not a nested list of numbers
    kind = ("tuple" if isinstance(data, tuple) else "list" if isinstance(data, list) and any(
        isinstance(d, (np.ndarray, tf.Tensor)) and d.ndim >= 2 for d in data) else None)
    if kind:
        if len(data) == 2:
            raise ValueError(
                f"This flow is unconditional: give {name} as x, an array [N, "
                f"{flow.event_dim}]; received a pair ({kind} of two), but a flow has no "
                "targets (a pair (x, context) is for a conditional flow, made with "
                "context_dim).")
        raise ValueError(f"{name} must be an array [N, {flow.event_dim}]; received a {kind} "
                         f"of {len(data)} items.")
    data = _as_array(data)
    check(name, data)
    _check_rows(name, data)
    check_event_dim("Flow", np.asarray(data), flow.event_dim)
    if finite:
        check_domain(flow, name, data)
    return data


def _batch_forms(flow):
    """The forms of a stream's batches `flow` takes, in words."""
    if flow.context_dim is None:
        return "x, (x,) or (x, None, sample_weight)"
    return "(x, context), ((x, context),) or ((x, context), None, sample_weight)"


def _check_batch_form(flow, batch):
    """Raises a ValueError naming the forms `flow` takes if `batch` (a stream's batch,
    or a `tf.data` element spec) is a dict, a conditional flow's lone `x` or flat
    `(x, context, w)`, or a triple whose middle item (targets) is not None.
    Pairs are `_keras_batch`'s."""
    if isinstance(batch, dict):
        raise ValueError(f"A batch of this flow's data is {_batch_forms(flow)}; received a "
                         f"dict (keys {sorted(map(str, batch))}).")
    conditional = flow.context_dim is not None
    if conditional and not isinstance(batch, (tuple, list)):
        raise ValueError(f"This flow is conditional (context_dim={flow.context_dim}): a batch "
                         f"of its data is {_batch_forms(flow)}; received x alone.")
    if not isinstance(batch, (tuple, list)) or len(batch) not in (1, 3):
        return
    paired = isinstance(batch[0], (tuple, list)) and len(batch[0]) == 2
    if conditional and not paired:
        raise ValueError(
            f"This flow is conditional (context_dim={flow.context_dim}): a batch of its data "
            f"is {_batch_forms(flow)}; received a {'triple' if len(batch) == 3 else 'tuple'} "
            "whose first item is not (x, context) (weigh the rows with ((x, context), None, "
            "sample_weight)).")
    if len(batch) == 3 and not (batch[1] is None or isinstance(batch[1], _NONE_SPEC)):
        raise ValueError(
            f"A batch (inputs, y, sample_weight) has targets y, and a flow has none: a batch "
            f"of this flow's data is {_batch_forms(flow)}.")


def _keras_batch(flow, batch):
    """One batch of a stream, in Keras' `(inputs,)` / `(inputs, None, sample_weight)`
    form: a bare `x` becomes `(x,)`, a conditional flow's `(x, context)` becomes
    `((x, context),)`. Raises on a `(x, y)` batch of an unconditional flow, and on
    `((x, context), y)`: a flow has no targets; and on other forms than the flow's
    (`_check_batch_form`)."""
    _check_batch_form(flow, batch)
    if isinstance(batch, list):
        batch = tuple(batch)
    if not isinstance(batch, tuple):
        return (batch,)
    if len(batch) == 2 and not isinstance(batch[0], (tuple, list)):
        if flow.context_dim is not None:
            return ((batch[0], batch[1]),)
        raise ValueError(
            "A batch of an unconditional flow's data is x, (x,) or (x, None, "
            "sample_weight); received a pair (x, y), and a flow has no targets. "
            "For a conditional flow (context_dim set) a pair is (x, context).")
    if len(batch) == 2 and batch[1] is not None:
        # ((x, context), w) reads as Keras' (inputs, targets), and the loss reads no
        # targets: the weights were dropped without a word
        raise ValueError(
            "A batch ((x, context), y) is Keras' (inputs, targets), and a flow has no "
            "targets; weigh the rows with ((x, context), None, sample_weight).")
    if len(batch) == 3 and batch[1] is None and batch[2] is not None:
        # (x, None, sample_weight): zeros for the None (a flow's loss reads no y), as
        # for weighted arrays; Keras' adapters of generators and PyDatasets cannot
        # carry a None (a tf.data Optional that the step could not take as a tensor)
        w = batch[2]
        zeros = (tf.zeros(tf.shape(w)[:1], "float32") if tf.is_tensor(w)
                 else np.zeros(len(w), "float32"))
        return (batch[0], zeros, w)
    return batch


def _bad_weights(w):
    """The entries of a NumPy weight array that are not finite and >= 0."""
    return ~np.isfinite(w) | (w < 0)


def _checked_batch(flow, batch, what, index):
    """A Keras-form batch of NumPy arrays or tensors (`_keras_batch`'s output),
    unchanged; raises ValueError naming `what` and the batch's `index` if its
    float inputs hold NaN or inf, its `x` values outside the flow's data-end
    domain (`check_domain`), its context labels a `ClassEmbedding` context
    encoder does not know, or its weights are not finite and >= 0."""
    for leaf in tf.nest.flatten(batch[0]):
        if leaf is not None and np.asarray(leaf).dtype.kind == "f":
            check_finite(f"{what}, batch {index},", leaf, flow.compute_dtype)
    x = batch[0] if flow.context_dim is None else batch[0][0]
    check_domain(flow, f"{what}, batch {index}", x, keras_cast=False)
    embedding = label_embedding(flow)
    if embedding is not None:
        embedding.check_context(np.asarray(batch[0][1]), f"{what}, batch {index}, context")
    if len(batch) > 2 and batch[2] is not None:
        w = np.asarray(batch[2])
        bad = _bad_weights(w)
        if bad.any():
            raise ValueError(f"{what}, batch {index}: sample weights must be finite and "
                             f">= 0; received {w[bad][:5].tolist()}.")
    return batch


def _checked_tensors(flow, batch, what):
    """`_checked_batch` for a `tf.data` batch: the float inputs pass through
    `tf.debugging.assert_all_finite`, `x` and the weights assertions, so reading
    a bad batch raises `InvalidArgumentError` naming `what`."""
    compute = tf.as_dtype(flow.compute_dtype)
    message = (f"{what} hold NaN or inf in a batch of the tf.data stream, or values beyond "
               f"{compute.name}'s range, the flow's, where they overflow to inf (remove, "
               "impute or rescale them first)")

    def finite(t):
        # (in the flow's dtype, as Keras casts them: float64 1e39 is inf in float32)
        wider = t.dtype.is_floating and t.dtype.size > compute.size
        return tf.debugging.assert_all_finite(tf.cast(t, compute) if wider else t, message)
    inputs = tf.nest.map_structure(lambda t: finite(t) if t.dtype.is_floating else t, batch[0])
    if flow.context_dim is None:
        inputs = asserted_domain(flow, inputs, what)
    else:
        inputs = (asserted_domain(flow, inputs[0], what), _asserted_labels(flow, inputs[1], what))
    rest = list(batch[1:])
    if len(rest) > 1 and rest[1] is not None:
        w = rest[1]
        valid = tf.reduce_all(tf.math.is_finite(w) & (w >= 0))
        with tf.control_dependencies([raising_unless(
                valid, f"{what}: the sample weights of a batch must be finite and >= 0")]):
            rest[1] = tf.identity(w)
    return (inputs, *rest)


def _asserted_labels(flow, context, what):
    """A `tf.data` batch's `context`, asserted to hold labels the flow's
    `ClassEmbedding` context encoder knows (`check_context`: 0..K-1 once rounded);
    as it is for other encoders."""
    embedding = label_embedding(flow)
    if embedding is None:
        return context
    k = embedding.num_classes
    valid = tf.reduce_all(embedding.known(context)[1])
    with tf.control_dependencies([raising_unless(valid, (
            f"{what} hold labels outside 0..{k - 1} in a batch of the tf.data stream "
            f"(ClassEmbedding(num_classes={k}) knows labels 0..{k - 1}; one it does not "
            "makes every weight NaN in training)"))]):
        return tf.identity(context)


class _KerasBatches(keras.utils.PyDataset):
    """A `keras.utils.PyDataset` whose batches go through `_keras_batch` (and
    `_checked_batch` if `what` names the data)."""

    def __init__(self, flow, inner, what=None):
        super().__init__(workers=inner.workers, use_multiprocessing=inner.use_multiprocessing,
                         max_queue_size=inner.max_queue_size)
        self._flow, self._inner, self._what = flow, inner, what

    @property
    def num_batches(self):
        return self._inner.num_batches

    def __getitem__(self, index):
        batch = _keras_batch(self._flow, self._inner[index])
        if self._what is None:
            return batch
        return _checked_batch(self._flow, batch, self._what, index)

    def on_epoch_begin(self):
        self._inner.on_epoch_begin()

    def on_epoch_end(self):
        self._inner.on_epoch_end()


def is_stream(data):
    """Whether `data` is a stream of batches (a `tf.data.Dataset`, `keras.utils.PyDataset`
    or an iterator) rather than arrays."""
    return (isinstance(data, (tf.data.Dataset, keras.utils.PyDataset))
            or (hasattr(data, "__next__") and not _is_array(data)))


def _stream_for_keras(flow, data, want_first=False, what=None):
    """`(stream, first_batch)`: a `tf.data.Dataset`, `keras.utils.PyDataset` or
    iterator (a Python generator) mapped through `_keras_batch`, and, if
    `want_first`, its first batch as `(x, context or None)` (else None; an
    iterator's first batch is read and put back). If `what` names the data
    ("Flow.fit's training data") and `flow.check_stream_data`, each batch is
    checked as it is read: NaN or inf in its inputs, or weights not finite
    and >= 0, raise."""
    if not getattr(flow, "check_stream_data", True):
        what = None
    first = None
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        _check_batch_form(flow, spec)
        if isinstance(spec, tuple) and len(spec) == 2:
            _keras_batch(flow, spec)        # (x, y) unconditional, ((x, c), y): raise
            data = data.map(lambda x, context: ((x, context),))
        if what is not None:
            # a parallel map: its buffer lets the check run beside the step
            data = data.map(lambda *batch: _checked_tensors(flow, batch, what),
                            num_parallel_calls=tf.data.AUTOTUNE)
        if want_first:
            first = next(iter(data.take(1)))
            first = first if isinstance(first, tuple) else (first,)
    elif isinstance(data, keras.utils.PyDataset):
        data = _KerasBatches(flow, data, what)
        first = data[0] if want_first else None
    else:
        check = ((lambda b, i: b) if what is None else
                 (lambda b, i: _checked_batch(flow, b, what, i)))
        if want_first:
            try:
                head = next(data)
            except StopIteration:
                raise ValueError("The data iterator (generator) yielded no batch.") from None
            first = check(_keras_batch(flow, head), 0)
            rest = (check(_keras_batch(flow, b), i) for i, b in enumerate(data, 1))
            data = (b for b in itertools.chain([first], rest))   # Keras takes generators
        else:
            data = (check(_keras_batch(flow, b), i) for i, b in enumerate(data))
    if first is not None:
        inputs = first[0]
        first = tuple(inputs) if flow.context_dim is not None else (inputs, None)
    return data, first


def _short_last_batch(n, batch_size, split):
    """True if `n` rows in batches of `batch_size` (Keras' default 32) may end with a
    short batch: a remainder, or a `validation_split` whose share is not known here."""
    return bool(split) or n % (batch_size or 32) != 0


def weights_for_keras(flow, x, sample_weight, method, batch_size=None, split=None):
    """`(y, sample_weight)` to hand Keras with array data `x` (as `_check_arrays`
    returns it) and per-example `sample_weight`. Keras drops `sample_weight` when
    there is no `y`, and a flow has none, so weighted data get a placeholder `y`
    of zeros (a flow's loss does not read it). The weights are scaled to a
    largest of about 1 in the dtype the loss reads them in (`_scaled_weights`).
    Streams carry their own weights, as `(x, None, sample_weight)` batches.

    Unweighted arrays whose last batch of `batch_size` rows (or after a
    `validation_split`) may be short get weights of 1 when the flow pads short
    batches (`Flow.pads_short_batches`): the step's flat calls pad a weighted
    batch, so the last one runs on the full batches' XLA executable instead of
    compiling its own."""
    n = None if is_stream(x) else len(x[0]) if flow.context_dim is not None else len(x)
    if sample_weight is None:
        if (n is not None and _short_last_batch(n, batch_size, split)
                and flow.pads_short_batches()):
            return np.zeros(n, "float32"), np.ones(n, "float32")
        return None, None
    if n is None:
        raise ValueError(f"Flow.{method}: `sample_weight` goes with array data; the "
                         "batches of a stream carry their own, as (x, None, sample_weight).")
    w = np.asarray(sample_weight)
    if w.shape != (n,) or not numeric(w.dtype):
        raise ValueError(f"Flow.{method}: `sample_weight` must be numbers of shape ({n},), "
                         f"one per example; received {w.dtype} of shape {w.shape}.")
    bad = _bad_weights(w)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"Flow.{method}: `sample_weight` must be finite and >= 0; "
                         f"received {float(w[i])!r} for example {i} ({int(bad.sum())} such "
                         f"weight{'s' if bad.sum() > 1 else ''} in all).")
    return np.zeros(n, "float32"), _scaled_weights(flow, w)


def _weight_dtype(flow):
    """The dtype a flow's loss reads array sample weights in: the narrower of its
    loss's (float64 for a float64 flow, else float32) and Keras' floatx, which
    Keras' array adapter casts float arrays to."""
    own = "float64" if flow.compute_dtype == "float64" else "float32"
    return min(own, keras.config.floatx(), key=lambda d: np.finfo(d).bits)


def _scaled_weights(flow, w):
    """Checked weights `w` (finite, >= 0) in `_weight_dtype(flow)`, multiplied by
    the power of two (exactly) that brings the largest into [0.5, 1): the loss
    is their weighted mean, which their scale does not change, so weights
    outside the dtype's range (1e-50 or 1e50 in float32, once 0 or inf: a loss
    of 0 or NaN) weigh as they should. A weight below the dtype's smallest
    normal number times the largest becomes 0: its share of the mean is far
    below the loss's rounding (normalised importance weights span that much)."""
    dtype = _weight_dtype(flow)
    top = float(np.max(w, initial=0))
    if top == 0:
        return np.asarray(w, dtype)
    scaled = np.ldexp(np.asarray(w, "float64"), -np.frexp(top)[1])
    scaled[scaled < np.finfo(dtype).tiny] = 0.0
    return scaled.astype(dtype)


def prepare_eval_data(flow, x, y, method):
    """`x` for `keras.Model.evaluate` / `predict`: streams mapped as in `fit`."""
    if y is not None:
        raise ValueError(f"Flow.{method} takes no targets (a flow's loss is its negative "
                         f"log-likelihood); received y of type {type(y).__name__}.")
    if x is None:
        raise ValueError(f"Flow.{method} needs data x.")
    if is_stream(x):   # predict: a NaN row gets NaN, as from log_prob
        return _stream_for_keras(flow, x, what=None if method == "predict" else
                                 f"Flow.{method}'s data")[0]
    if method == "predict":     # the log-density of each row: a NaN row gives NaN
        data = _check_arrays(flow, x, "predict's data", finite=False)
    else:
        data = _check_arrays(flow, x, f"{method}'s data")
    return tuple(data) if flow.context_dim is not None else data


def _first_rows(data, n, shuffle):
    """`n` rows of array data for data-dependent initialisation: the first `n`, or
    with `shuffle` `n` drawn at random (NumPy's global generator, which
    `keras.utils.set_random_seed` seeds), as the first batch of a shuffled
    epoch would be."""
    total = len(data)
    if not shuffle or total <= n:
        return np.asarray(data[:n])
    return np.asarray(data)[np.sort(np.random.permutation(total)[:n])]


def _validation_arrays(validation_data):
    """Keras' array forms of `validation_data` -> `(x_val, weights or None)`:
    `x_val`, `(x_val,)`, `(x_val, None)`, `(x_val, None, sample_weight)`, and
    lists of arrays for tuples (`x_val` being `(x, context)` for a conditional
    flow)."""
    v = validation_data
    if isinstance(v, list) and v and all(e is None or isinstance(e, (np.ndarray, tf.Tensor, tuple))
                                         for e in v):
        v = tuple(v)
    if isinstance(v, tuple) and len(v) == 3 and v[1] is None:
        return v[0], v[2]
    if isinstance(v, tuple) and (len(v) == 1 or (len(v) == 2 and v[1] is None)):
        return v[0], None
    return v, None


def prepare_fit_data(flow, x, y, batch_size, validation_data, shuffle=True,
                     validation_batch_size=None, validation_split=None):
    """Returns `(x, validation_data, first_batch)` ready for `keras.Model.fit`.

    `x` may be arrays (`x`, or `(x, context)` for a conditional flow), checked
    here for shape and NaN / inf, or a stream of batches: a `tf.data.Dataset`,
    `keras.utils.PyDataset` or Python generator, whose batches are `x`, `(x,)`
    or `(x, None, sample_weight)` (`x` being `(x, context)` for a conditional
    flow, which also takes a bare pair `(x, context)`). `first_batch` is
    `(x_batch, context_batch or None)` for data-dependent initialisation (None
    for a stream when no layer needs it): for arrays, `batch_size` rows,
    drawn at random when `shuffle` (as `fit` shuffles), from the rows Keras
    trains on (those before `validation_split`'s held-out tail). Array
    `validation_data` may also be `(x_val,)`, `(x_val, None)` or carry
    weights as `(x_val, None, sample_weight)`.
    """
    if y is not None:
        raise ValueError("Flow.fit trains by maximum likelihood and takes no targets: "
                         "call fit(x) (or fit((x, context)) for a conditional flow). "
                         f"Received y of type {type(y).__name__}.")
    if x is None:
        raise ValueError("Flow.fit needs training data x.")
    if is_stream(x):
        x, first = _stream_for_keras(flow, x, want_first=flow.needs_data_init,
                                     what="Flow.fit's training data")
    else:
        x = _check_arrays(flow, x, "training data")
        n = batch_size or 32
        total = len(x) if flow.context_dim is None else len(x[0])
        # Keras holds out the last `validation_split` of the rows, before shuffling
        train = math.floor(total * (1.0 - validation_split)) if validation_split else total
        # the warnings look at the rows it trains on (a column constant in them but
        # not in the held-out tail has no optimum all the same)
        warn_about_columns(flow, *((np.asarray(x)[:train],) if flow.context_dim is None
                                   else (np.asarray(a)[:train] for a in x[:2])))
        rows = _first_rows(np.arange(max(train, 1)), n, shuffle)
        first = ((np.asarray(x)[rows], None) if flow.context_dim is None else
                 tuple(np.asarray(a)[rows] for a in x))
    if validation_data is None:
        pass
    elif is_stream(validation_data):
        validation_data = _stream_for_keras(flow, validation_data,
                                            what="Flow.fit's validation data")[0]
    else:
        validation_data, weights = _validation_arrays(validation_data)
        x_val = _check_arrays(flow, validation_data, "validation data")
        if flow.context_dim is not None:
            x_val = tuple(x_val)
        validation_data = (x_val,)
        y_val, w_val = weights_for_keras(flow, x_val, weights, "fit's validation_data",
                                         validation_batch_size or batch_size)
        if w_val is not None:
            validation_data = (x_val, y_val, w_val)
    return x, validation_data, first
