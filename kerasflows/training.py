"""Training helpers: checks of the data given to `Flow.fit` (done once before
training) and `make_train_step`, a compiled maximum-likelihood step for
hand-written training loops."""

import atexit
import itertools
import threading

import keras
import numpy as np
import tensorflow as tf

from kerasflows.graph_calls import light_calls
from kerasflows.layers.base import check_event_dim, check_positive_int, context_rows

__all__ = ["prepare_fit_data", "prepare_eval_data", "check_finite", "make_train_step",
           "shard_rows", "BackgroundCompiledStep", "FlatCalls", "FlatStepCalls",
           "FlatStepFunctions"]


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
    check = check_finite if finite else lambda name, a: None
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
        check_context = getattr(flow.context_encoder, "check_context", None)
        if finite and check_context is not None:   # e.g. ClassEmbedding: labels in range
            check_context(np.asarray(c), f"{name} context")
        return (x, c)
    if isinstance(data, tuple):
        if len(data) == 2:
            raise ValueError(
                f"This flow is unconditional: give {name} as x, an array [N, "
                f"{flow.event_dim}]; received a pair, but a flow has no targets (a pair "
                "(x, context) is for a conditional flow, made with context_dim).")
        raise ValueError(f"{name} must be an array [N, {flow.event_dim}]; received a tuple "
                         f"of {len(data)} items.")
    data = _as_array(data)
    check(name, data)
    _check_rows(name, data)
    check_event_dim("Flow", np.asarray(data), flow.event_dim)
    return data


def _keras_batch(flow, batch):
    """One batch of a stream, in Keras' `(inputs,)` / `(inputs, None, sample_weight)`
    form: a bare `x` becomes `(x,)`, a conditional flow's `(x, context)` becomes
    `((x, context),)`. Raises on a `(x, y)` batch of an unconditional flow."""
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
    return batch


class _KerasBatches(keras.utils.PyDataset):
    """A `keras.utils.PyDataset` whose batches go through `_keras_batch`."""

    def __init__(self, flow, inner):
        super().__init__(workers=inner.workers, use_multiprocessing=inner.use_multiprocessing,
                         max_queue_size=inner.max_queue_size)
        self._flow, self._inner = flow, inner

    @property
    def num_batches(self):
        return self._inner.num_batches

    def __getitem__(self, index):
        return _keras_batch(self._flow, self._inner[index])

    def on_epoch_begin(self):
        self._inner.on_epoch_begin()

    def on_epoch_end(self):
        self._inner.on_epoch_end()


def _is_stream(data):
    return (isinstance(data, (tf.data.Dataset, keras.utils.PyDataset))
            or (hasattr(data, "__next__") and not _is_array(data)))


def _stream_for_keras(flow, data, want_first=False):
    """`(stream, first_batch)`: a `tf.data.Dataset`, `keras.utils.PyDataset` or
    iterator (a Python generator) mapped through `_keras_batch`, and, if
    `want_first`, its first batch as `(x, context or None)` (else None; an
    iterator's first batch is read and put back)."""
    first = None
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if isinstance(spec, tuple) and len(spec) == 2 and not isinstance(spec[0], tuple):
            _keras_batch(flow, spec)        # an unconditional flow's (x, y) raises here
            data = data.map(lambda x, context: ((x, context),))
        if want_first:
            first = next(iter(data.take(1)))
            first = first if isinstance(first, tuple) else (first,)
    elif isinstance(data, keras.utils.PyDataset):
        data = _KerasBatches(flow, data)
        first = data[0] if want_first else None
    elif want_first:
        try:
            head = next(data)
        except StopIteration:
            raise ValueError("The data iterator (generator) yielded no batch.") from None
        first = _keras_batch(flow, head)
        data = (_keras_batch(flow, b) for b in itertools.chain([head], data))
    else:
        data = (_keras_batch(flow, b) for b in data)
    if first is not None:
        inputs = first[0]
        first = tuple(inputs) if flow.context_dim is not None else (inputs, None)
    return data, first


def weights_for_keras(flow, x, sample_weight, method):
    """`(y, sample_weight)` to hand Keras with array data `x` (as `_check_arrays`
    returns it) and per-example `sample_weight`. Keras drops `sample_weight` when
    there is no `y`, and a flow has none, so weighted data get a placeholder `y`
    of zeros (a flow's loss does not read it). Streams carry their own weights,
    as `(x, None, sample_weight)` batches."""
    if sample_weight is None:
        return None, None
    if _is_stream(x):
        raise ValueError(f"Flow.{method}: `sample_weight` goes with array data; the "
                         "batches of a stream carry their own, as (x, None, sample_weight).")
    n = len(x[0]) if flow.context_dim is not None else len(x)
    w = np.asarray(sample_weight)
    if w.shape != (n,) or not np.issubdtype(w.dtype, np.number):
        raise ValueError(f"Flow.{method}: `sample_weight` must be numbers of shape ({n},), "
                         f"one per example; received {w.dtype} of shape {w.shape}.")
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"Flow.{method}: `sample_weight` must be finite and >= 0; "
                         f"received {float(w[i])!r} for example {i} ({int(bad.sum())} such "
                         f"weight{'s' if bad.sum() > 1 else ''} in all).")
    return np.zeros(n, "float32"), w.astype("float32")


def prepare_eval_data(flow, x, y, method):
    """`x` for `keras.Model.evaluate` / `predict`: streams mapped as in `fit`."""
    if y is not None:
        raise ValueError(f"Flow.{method} takes no targets (a flow's loss is its negative "
                         f"log-likelihood); received y of type {type(y).__name__}.")
    if x is None:
        raise ValueError(f"Flow.{method} needs data x.")
    if _is_stream(x):
        return _stream_for_keras(flow, x)[0]
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


def prepare_fit_data(flow, x, y, batch_size, validation_data, shuffle=True):
    """Returns `(x, validation_data, first_batch)` ready for `keras.Model.fit`.

    `x` may be arrays (`x`, or `(x, context)` for a conditional flow), checked
    here for shape and NaN / inf, or a stream of batches: a `tf.data.Dataset`,
    `keras.utils.PyDataset` or Python generator, whose batches are `x`, `(x,)`
    or `(x, None, sample_weight)` (`x` being `(x, context)` for a conditional
    flow, which also takes a bare pair `(x, context)`). `first_batch` is
    `(x_batch, context_batch or None)` for data-dependent initialisation (None
    for a stream when no layer needs it): for arrays, `batch_size` rows,
    drawn at random when `shuffle` (as `fit` shuffles). Array
    `validation_data` may also be `(x_val,)`, `(x_val, None)` or carry
    weights as `(x_val, None, sample_weight)`.
    """
    if y is not None:
        raise ValueError("Flow.fit trains by maximum likelihood and takes no targets: "
                         "call fit(x) (or fit((x, context)) for a conditional flow). "
                         f"Received y of type {type(y).__name__}.")
    if x is None:
        raise ValueError("Flow.fit needs training data x.")
    if _is_stream(x):
        x, first = _stream_for_keras(flow, x, want_first=flow.needs_data_init)
    else:
        x = _check_arrays(flow, x, "training data")
        n = batch_size or 32
        if flow.context_dim is None:
            first = (_first_rows(x, n, shuffle), None)
        else:
            rows = _first_rows(np.arange(len(x[0])), n, shuffle)
            first = tuple(np.asarray(a)[rows] for a in x)
    if validation_data is None:
        pass
    elif _is_stream(validation_data):
        validation_data = _stream_for_keras(flow, validation_data)[0]
    else:
        validation_data, weights = _validation_arrays(validation_data)
        x_val = _check_arrays(flow, validation_data, "validation data")
        if flow.context_dim is not None:
            x_val = tuple(x_val)
        validation_data = (x_val,)
        if weights is not None:
            validation_data = (x_val, *weights_for_keras(flow, x_val, weights,
                                                         "fit's validation_data"))
    return x, validation_data, first


#: Name of the one-vector reference a packed Adam is built on (see `_adam_layout`).
PACKED_ADAM_NAME = "kerasflows_packed_weights"


def _plain_adam(optimizer, variables):
    """True if `optimizer` is a plain Keras Adam whose update the compiled steps
    reproduce exactly (same formula, same state), on same-dtype weights."""
    plain = (type(optimizer) is keras.optimizers.Adam and not optimizer.amsgrad
             and optimizer.weight_decay is None and not optimizer.use_ema
             and optimizer.clipnorm is None and optimizer.clipvalue is None
             and optimizer.global_clipnorm is None and not optimizer.gradient_accumulation_steps
             and optimizer.loss_scale_factor is None)
    return (plain and not tf.distribute.has_strategy() and bool(variables)
            and all(v.dtype == variables[0].dtype for v in variables))


def _packed_size(optimizer):
    """Length of the packed layout `optimizer` was built on, or None."""
    refs = getattr(optimizer, "_trainable_variables", None) or []
    if len(refs) == 1 and refs[0].name == PACKED_ADAM_NAME and len(refs[0].shape) == 1:
        return int(refs[0].shape[0])
    return None


def _adam_layout(optimizer, variables):
    """Builds `optimizer` if needed and returns how a step updates it.

    "packed": a plain Adam built here (or by an earlier step on the same
    flow) on one vector reference of all the weights' sizes, so its moment
    estimates are two vectors in `variables` order and a compiled step
    updates 2 optimizer slots instead of 2 per weight; "per_variable": a plain
    Adam already built for `variables` (TF's fused kernel, one op per weight);
    None: any other optimizer (its own `apply_gradients`).
    """
    n = sum(int(np.prod(v.shape)) for v in variables)
    packed = _packed_size(optimizer)
    if _plain_adam(optimizer, variables):
        if not optimizer.built:
            optimizer.build([keras.Variable(np.zeros(n), dtype=variables[0].dtype,
                                            name=PACKED_ADAM_NAME)])
            return "packed"
        if packed == n:
            return "packed"
    if packed is not None:
        raise ValueError(
            f"This optimizer was built by make_train_step on a packed layout of "
            f"{packed} weights; this flow has {n} (or the optimizer is no "
            "longer a plain Adam). Give each flow its own optimizer.")
    optimizer.build(variables)
    if _plain_adam(optimizer, variables) and len(optimizer._momentums) == len(variables):
        return "per_variable"
    return None


def _adam_state(optimizer, variables):
    """The `tf.Variable`s an Adam step updates: `(weights, m, v, iterations)`
    (`m` and `v` one vector each in the packed layout)."""
    return ([w.value for w in variables], [m.value for m in optimizer._momentums],
            [v.value for v in optimizer._velocities], optimizer.iterations.value)


def _adam_update(optimizer, grads, state, layout):
    """Keras Adam's update of `state` (`_adam_state(...)`: the optimizer's own
    variables, or stand-ins of the same shapes, see `BackgroundCompiledStep`).

    Same formula as `keras.optimizers.Adam.update_step` (Kingma & Ba 2015,
    with the bias correction folded into the step size):
    `m += (1 - b1)(g - m)`, `v += (1 - b2)(g^2 - v)`,
    `w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)`. A weight the
    loss does not reach (gradient None) and its moments stay as they are.
    "per_variable" runs TF's fused `ResourceApplyAdam` kernel once per weight;
    "packed" does the update as one vector over all weights, so the compiled
    step reads and writes 2 moment variables, not 2 per weight (every
    variable costs the XLA launch some microseconds: MAF 2-D, batch 512,
    30 weights, 2.0 -> 1.7 ms per step, same-process A/B).
    """
    weights, momentums, velocities, iterations = state
    dtype = weights[0].dtype
    constants = _adam_constants(optimizer, iterations, dtype)
    b1, b2, eps, lr, b1_power, b2_power = constants
    if layout == "per_variable":
        for var, grad, m, v in zip(weights, grads, momentums, velocities):
            if grad is not None:
                tf.raw_ops.ResourceApplyAdam(
                    var=var.handle, m=m.handle, v=v.handle, beta1_power=b1_power,
                    beta2_power=b2_power, lr=lr, beta1=b1, beta2=b2, epsilon=eps,
                    grad=tf.cast(grad, dtype))
    else:   # packed: `m` and `v` are one vector each over all weights
        g, reached = _flat_gradient(weights, grads)
        sizes = [int(np.prod(w.shape)) for w in weights]
        delta = _packed_adam_step(g, reached, momentums[0], velocities[0], constants, sizes)
        for var, d, r in zip(weights, tf.split(delta, sizes), reached):
            if r:
                var.assign_sub(tf.reshape(d, var.shape))
    iterations.assign_add(1)


def _adam_constants(optimizer, iterations, dtype):
    """`(beta_1, beta_2, epsilon, learning_rate, beta_1^t, beta_2^t)` for the step
    after `iterations`, as `dtype` tensors."""
    t = tf.cast(iterations + 1, dtype)
    b1, b2, eps = (tf.constant(getattr(optimizer, name), dtype)
                   for name in ("beta_1", "beta_2", "epsilon"))
    lr = tf.cast(optimizer.learning_rate, dtype)
    return b1, b2, eps, lr, tf.pow(b1, t), tf.pow(b2, t)


def _packed_adam_step(g, reached, m, v, constants, sizes):
    """Updates the packed moment vectors `m` and `v` with the flat gradient `g`
    (a weight not `reached` keeps its moments) and returns the flat step
    `lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)` that Adam subtracts
    from the weights (meaningless for the weights not reached, which stay)."""
    b1, b2, eps, lr, b1_power, b2_power = constants
    m0, v0 = m.read_value(), v.read_value()
    m1, v1 = m0 + (1 - b1) * (g - m0), v0 + (1 - b2) * (tf.square(g) - v0)
    if not all(reached):
        keep = tf.constant(np.repeat(reached, sizes))
        m1, v1 = tf.where(keep, m1, m0), tf.where(keep, v1, v0)
    m.assign(m1)
    v.assign(v1)
    return lr * tf.sqrt(1 - b2_power) / (1 - b1_power) * m1 / (tf.sqrt(v1) + eps)


def _flat_gradient(weights, grads):
    """`(vector, reached)`: `grads` (one per weight, None where not reached) as one
    vector in the packed layout's order (zeros where not reached), and which
    weights they reach."""
    dtype = weights[0].dtype
    g = tf.concat([tf.reshape(tf.zeros(w.shape, dtype) if gr is None else tf.cast(gr, dtype),
                              [-1]) for w, gr in zip(weights, grads)], 0)
    return g, tuple(gr is not None for gr in grads)


def _loss_and_grads(flow, variables, x, context, optimizer):
    """The batch's mean NLL (plus layer losses, as `Flow.compute_loss`) and its
    gradient with respect to `variables` (of the loss as `optimizer.scale_loss`
    scales it: a `LossScaleOptimizer` unscales the gradient when it applies it)."""
    inputs = x if context is None else (x, context)
    with tf.GradientTape() as tape:
        loss = flow.compute_loss(y_pred=flow(inputs, training=True))
        scaled = optimizer.scale_loss(loss)
    return loss, tape.gradient(scaled, variables)


def shard_rows(n, shards):
    """Rows of the consecutive parts a batch of `n` rows is split into for
    `make_train_step(..., shards=shards)`: as even as possible, the larger
    parts first, never empty (at most `n` parts)."""
    shards = max(1, min(shards, n))
    base, extra = divmod(n, shards)
    return tuple(base + (i < extra) for i in range(shards))


def _loss_and_grads_at(flow, variables, values, x, context, optimizer):
    """`_loss_and_grads` with the flow's `variables` taking `values` (tensors of
    their shapes) in a `keras.StatelessScope`: the gradient is with respect to
    `values`, and the compiled function that computes it takes no variables.
    A variable the call writes (a dropout layer's seed, say) is written after
    the scope, as the call would have written it outside one."""
    inputs = x if context is None else (x, context)
    with tf.GradientTape() as tape:
        tape.watch(values)
        with keras.StatelessScope(state_mapping=list(zip(variables, values)),
                                  collect_losses=True) as scope:
            loss = flow.compute_loss(y_pred=flow(inputs, training=True))
            written = [(v, scope.get_current_value(v)) for v in flow.variables
                       if not any(v is w for w in variables)]
        scaled = optimizer.scale_loss(loss)
    for variable, value in written:
        if value is not None:
            variable.assign(value)
    return loss, tape.gradient(scaled, values)


def _sharded_body(flow, variables, optimizer, layout, jit_compile):
    """`body(x, context, state, shards) -> loss`: one optimizer step whose batch is
    split into `shard_rows(batch, shards)` parts, each part's loss and gradient
    computed by its own call of one compiled function (with no data between
    them, TensorFlow's executor runs those calls at the same time, one per
    inter-op thread), then combined, weighted by rows, and applied by one more
    compiled call. `state` is `_adam_state(...)` (or stand-ins of the same
    shapes) for an Adam `layout`, None for an optimizer's own `apply_gradients`.

    With the packed Adam layout the compiled calls take no weight variables:
    the step's graph reads the weights once and hands their values to both
    parts (the flow runs on them in a `keras.StatelessScope`,
    `_loss_and_grads_at`); the update call returns the new weights as one
    vector and the graph writes them back. A variable argument costs a call
    more than a tensor (the launch locks and reads it), and the ~30 weights of
    a 5-layer flow went into each of the three calls (2-D, batch 512, steps of
    the variants interleaved in one process: MAF 1.09 -> 1.06 ms, RealNVP
    1.03 -> 0.95 ms; NSF and 64-D RealNVP level; the same losses to the bit).
    """
    reached = {}      # set when `part` is traced: which weights the loss reaches
    packed = layout == "packed"
    sizes = [int(np.prod(v.shape)) for v in variables]

    def values(state):
        """The weights' values that the parts take (packed layout), or None."""
        return [tf.convert_to_tensor(w) for w in state[0]] if packed else None

    @tf.function(jit_compile=bool(jit_compile), autograph=False)
    def part(x, context, weights=None):
        if not packed:
            return _loss_and_grads(flow, variables, x, context, optimizer)
        loss, grads = _loss_and_grads_at(flow, variables, weights, x, context, optimizer)
        # One vector out instead of one tensor per weight: each output costs the
        # launch and the executor something.
        vector, reached["packed"] = _flat_gradient(variables, grads)
        return loss, vector

    @tf.function(jit_compile=bool(jit_compile), autograph=False)
    def update(rows, losses, grads, state, reached, weights=None):
        n = sum(rows)
        frac = [tf.constant(r / n, losses[0].dtype) for r in rows]
        loss = tf.add_n([f * l for f, l in zip(frac, losses)])
        if packed:      # `state` without the weights, which come in as `weights`
            g = tf.add_n([tf.cast(f, g.dtype) * g for f, g in zip(frac, grads)])
            momentums, velocities, iterations = state
            delta = _packed_adam_step(g, reached, momentums[0], velocities[0],
                                      _adam_constants(optimizer, iterations, g.dtype),
                                      sizes)
            iterations.assign_add(1)
            return loss, tf.concat([tf.reshape(w, [-1]) for w in weights], 0) - delta
        combined = []
        for per_part in zip(*grads):
            if per_part[0] is None:
                combined.append(None)
                continue
            dense = [tf.convert_to_tensor(g) for g in per_part]      # IndexedSlices too
            combined.append(tf.add_n([tf.cast(f, g.dtype) * g for f, g in zip(frac, dense)]))
        if layout:
            _adam_update(optimizer, combined, state, layout)
        else:
            optimizer.apply_gradients(zip(combined, variables))
        return loss

    def apply(rows, losses, grads, state, weights):
        """The update call; with the packed layout, also writes the new weights."""
        if not packed:
            return update(rows, losses, grads, state, None)
        loss, new = update(rows, losses, grads, state[1:], reached["packed"], weights)
        for var, value, r in zip(state[0], tf.split(new, sizes), reached["packed"]):
            if r:
                var.assign(tf.reshape(value, var.shape))
        return loss

    def split(x, context, shards):
        n = x.shape[0]
        if n is None:
            raise ValueError("make_train_step(..., shards > 1) needs batches of a static "
                             f"size (received a batch of shape {x.shape}).")
        rows = shard_rows(n, shards)
        context = context_rows(context, n, lambda have: (
            f"The train step's context has {have} rows for a batch of {n} (shape "
            f"{tuple(x.shape)}); give one context row per row, or one row shared by all."))
        xs = tf.split(x, rows) if len(rows) > 1 else [x]
        cs = ([None] * len(rows) if context is None else
              tf.split(context, rows) if len(rows) > 1 else [context])
        return rows, xs, cs

    def body(x, context, state, shards):
        rows, xs, cs = split(x, context, shards)
        weights = values(state)
        outs = [part(a, c, weights) for a, c in zip(xs, cs)]
        return apply(rows, [o[0] for o in outs], [o[1] for o in outs], state, weights)

    def compile_parts(x, context, state, shards):
        """Compiles what `body` calls, one function at a time (for
        `BackgroundCompiledStep`; `state` may be stand-ins). Through graphs: XLA
        keeps what an eager call compiles apart from what a graph's call of the
        same function compiles. A graph's function call compiles on one of the
        executor's inter-op threads, and calls waiting for that compilation hold
        theirs: compiled through `body`, both parts would hold both of a 2-core
        machine's threads, and the graph step running meanwhile ran at half
        speed (RealNVP 2-D: 2.0 -> 4.4 ms a step until the swap)."""
        rows, xs, cs = split(x, context, shards)
        compiled = set()
        for a, c in zip(xs, cs):            # one compilation per part size
            if a.shape[0] not in compiled:
                compiled.add(a.shape[0])
                tf.function(lambda a, c, state: part(a, c, values(state)),
                            autograph=False)(a, c, state)

        def one_update(a, c, state):
            weights = values(state)
            loss, grads = part(a, c, weights)
            return apply(rows, [loss] * len(rows), [grads] * len(rows), state, weights)
        tf.function(one_update, autograph=False)(xs[0], cs[0], state)
    body.compile_parts = compile_parts
    return body


def _check_initialized(flow):
    """Raises ValueError if a layer that initialises from data (`ActNorm`) has not:
    a train step would train it from its placeholder values, and a later
    `fit` would then initialise it over the trained ones."""
    pending = [l.name for l in flow.flow_layers
               if l.needs_data_init and not (hasattr(l, "initialized")
                                             and bool(np.asarray(l.initialized)))]
    if pending:
        raise ValueError(
            f"make_train_step: layer{'s' if len(pending) > 1 else ''} {', '.join(pending)} "
            "initialise from data and have not yet: call flow.initialize(x) on a batch of "
            "training data (as fit does with its first batch) before making the step.")


def _check_shards(flow, shards):
    shards = check_positive_int("shards", shards)
    state = _training_state(flow) if shards > 1 else []
    if state:
        raise ValueError(
            f"shards={shards}: this flow updates state while it trains "
            f"({', '.join(v.path for v in state)}), which the parts "
            "of a sharded step would race to write; use shards=1.")
    if tf.distribute.has_strategy() or any(
            isinstance(getattr(v, "value", v), tf.distribute.DistributedValues)
            for v in flow.trainable_variables):
        raise ValueError(
            "make_train_step builds a one-device step, not one for a tf.distribute "
            "strategy (this flow's weights are distributed, or a strategy's scope is "
            "open): train under a strategy with Flow.fit (the flow made inside "
            "strategy.scope()) or kerasflows.distributed.train_flow.")
    return shards


def _training_state(flow):
    """Non-trainable variables a training call may update: all but the sampling
    seed and the flow layers' `static_weights()` (a context encoder's count)."""
    static = {id(v) for layer in flow.flow_layers for v in layer.static_weights()}
    return [v for v in flow.non_trainable_variables
            if id(v) not in static and not v.path.endswith("seed_generator_state")]


def make_train_step(flow, optimizer, jit_compile=True, background_compile=False, shards=1):
    """Returns `step(x, context=None) -> loss`: one maximum-likelihood optimizer step.

    The step is a `tf.function` (XLA-compiled with `jit_compile=True`) that
    computes the mean negative log-likelihood of the batch (plus any layer
    losses, as `Flow.compute_loss`), its gradient and the optimizer update
    in one compiled call; the returned loss (a scalar tensor, nats per
    example) is the only value that leaves it.

    A plain `keras.optimizers.Adam` (no clipping, weight decay, EMA, AMSGrad
    or gradient accumulation) is updated by the step itself, with Keras
    Adam's formula and the optimizer's own variables (fewer ops than
    `apply_gradients`: faster tracing and compilation). An Adam that is not
    built yet is built here on a *packed* layout: `optimizer.variables` are
    its iteration count, learning rate and one first- and one second-moment
    vector over all of `flow.trainable_variables` (flattened, in that order),
    not one pair per weight, so the compiled step handles 2 moment variables
    instead of 2 per weight; each variable costs an XLA launch microseconds,
    which on small steps adds up (MAF on 2-D data, batch 512: 2.0 -> 1.7 ms
    a step). Such an optimizer belongs to the flow's steps: a later
    `make_train_step` for the same flow reuses it, but Keras'
    `apply_gradients` (or `fit`) cannot; a flow with another number of
    weights raises. An Adam
    already built for the flow's weights keeps its per-weight slots (TF's
    fused Adam kernel, one op per weight); any other optimizer runs its own
    `apply_gradients`.

    A flow with float16 conditioners (a `"mixed_float16"` policy, see
    `kerasflows.Flow`) trains through a `keras.optimizers.LossScaleOptimizer`
    wrapping `optimizer` (unless it is one already), as `Flow.compile` does.

    With `shards > 1` each batch is split into that many consecutive parts
    (`shard_rows`), each part's loss and gradient is computed by its own
    call of one compiled function, and TensorFlow runs those calls at the
    same time, one per inter-op thread; the gradients, weighted by rows, are
    then applied in one more compiled call. It is the same update up to
    float rounding. XLA:CPU runs the small matrix products of a training
    step on one core, so on a CPU `shards=2` puts a second core to work
    (2 cores, batches of 512, 5 layers, hidden [64, 64], side by side in
    `benchmarks/shards_ab.py`: 64-D RealNVP 2.09 -> 1.72 ms a step, MAF
    3.79 -> 2.95 ms; 2-D NSF coupling 1.76 -> 1.42 ms, RealNVP 0.86 ->
    0.77 ms, MAF 1.34 -> 1.22 ms; the 2-D autoregressive NSF none); on a
    GPU, keep 1. With a plain Adam the compiled calls take the weights'
    values, not the variables (the step reads them once and writes the
    update's new weights back), which keeps the three calls' own cost low.
    Layer losses are per-batch terms and count once. Not for flows that
    update state while they train (`BatchNorm`).

    The step runs on one device: under a `tf.distribute` strategy, or for a
    flow whose weights one made (distributed variables), it raises a
    ValueError; use `Flow.fit` or `kerasflows.distributed.train_flow` there.

    Each new batch shape traces (and compiles) again, so feed batches of
    one size. Layers that need data-dependent initialisation (`ActNorm`)
    must be initialised first with `flow.initialize(x)` (a ValueError says
    so otherwise).

    With `background_compile=True` (and `jit_compile=True`, a plain Adam) the
    step is a `BackgroundCompiledStep`: training starts as soon as the step
    is traced, running it as a TensorFlow graph while XLA compiles it on a
    background thread, and switches to the compiled step when it is ready
    (the same computation, so the losses agree to float rounding; which
    steps ran as a graph depends on timing, so two runs are not bitwise
    equal). With `background_compile=N` (an int) exactly the first `N` steps
    of each batch shape run as a graph, even when XLA is done sooner, and
    from step `N + 1` the compiled step runs (step `N + 1` waits for the
    compilation if it has not finished): the same seed then gives the same
    run, bit for bit. Otherwise (another optimizer, no XLA, or a flow whose training call
    updates state of its own, such as `BatchNorm`'s moving statistics) the
    option is ignored.

    Example:

    ```python
    flow = kerasflows.models.MAF(2)
    step = make_train_step(flow, keras.optimizers.Adam(1e-3))
    for xb in batches:
        loss = float(step(xb))
    ```

    Args:
        flow: a `kerasflows.Flow`.
        optimizer: a Keras 3 optimizer (built here for the flow's weights,
            packed for an unbuilt Adam: see above).
        jit_compile: compile the step with XLA.
        background_compile: compile it on a background thread while the
            first steps run uncompiled (see above): True (switch as soon as
            it is compiled), or the number of uncompiled steps (switch after
            exactly that many, for reproducible runs).
        shards: split each batch into this many parts computed at the same
            time (see above); 1: one call for the whole step.

    Returns:
        The compiled step function.
    """
    _check_initialized(flow)
    shards = _check_shards(flow, shards)
    graph_steps = None
    if background_compile is not True and background_compile is not False:
        graph_steps = check_positive_int("background_compile", background_compile)
    optimizer = flow.with_loss_scaling(optimizer)
    variables = list(flow.trainable_variables)
    layout = _adam_layout(optimizer, variables)
    if background_compile and jit_compile and layout and not _training_state(flow):
        return BackgroundCompiledStep(flow, optimizer, shards=shards, graph_steps=graph_steps)
    if shards > 1:
        body = _sharded_body(flow, variables, optimizer, layout, jit_compile)
        state = _adam_state(optimizer, variables) if layout else None
        return tf.function(lambda x, context=None: body(x, context, state, shards),
                           autograph=False)

    def step(x, context=None):
        loss, grads = _loss_and_grads(flow, variables, x, context, optimizer)
        if layout:
            _adam_update(optimizer, grads, _adam_state(optimizer, variables), layout)
        else:
            optimizer.apply_gradients(zip(grads, variables))
        return loss
    # No autograph: the step has no Python control flow on tensors, and converting
    # it (and everything it calls) took about a third of the tracing time.
    return tf.function(step, jit_compile=bool(jit_compile), autograph=False)


class BackgroundCompiledStep:
    """An Adam train step that runs as a graph until XLA has compiled it.

    Made by `make_train_step(..., background_compile=True)`; call it as
    `step(x, context=None) -> loss`. For each batch signature the step is
    traced once (`get_concrete_function`) and runs as that TensorFlow graph
    while a daemon thread compiles the same graph with XLA by running it
    once on stand-in copies of the weights and Adam state (same shapes and
    dtypes, so the compiled function and XLA's cache entry are the ones the
    real variables use; the copies' update is thrown away). From the next
    call after that, the compiled step runs. The first step thus costs the
    tracing and one uncompiled run instead of tracing plus XLA compilation.
    The graph runs without the Grappler passes that leave a CPU graph as
    they found it (`kerasflows.graph_calls`), which takes about 0.2-0.4 s
    off the first run of a spline step.

    Which steps run as a graph depends on how long the compilation takes,
    and the two differ in float rounding, so two runs drift apart. With
    `graph_steps=N` exactly the first `N` calls of each batch signature run
    as a graph, and call `N + 1` waits for the compilation if it is still
    running (a compilation done sooner is not used before call `N + 1`):
    runs with the same seed are then the same, bit for bit.

    With `shards > 1` the compiled step is `make_train_step`'s sharded one,
    its parts and update compiled one after the other on the background
    thread; the graph runs the whole batch at once.

    Attributes:
        compiled: True when every batch signature called so far runs the
            compiled step.
        error: the exception that stopped a background compilation (the
            step then keeps running as a graph), or None.
        graph_steps: the fixed number of graph calls per batch signature, or
            None (switch as soon as the compiled step is ready).
    """

    def __init__(self, flow, optimizer, shards=1, graph_steps=None):
        shards = _check_shards(flow, shards)
        self.graph_steps = check_positive_int("graph_steps", graph_steps, allow_none=True)
        variables = list(flow.trainable_variables)
        layout = _adam_layout(optimizer, variables)
        if layout is None:
            raise ValueError("BackgroundCompiledStep needs a plain keras.optimizers.Adam "
                             f"(received {type(optimizer).__name__}); use make_train_step.")
        self.state = _adam_state(optimizer, variables)
        self.error = None
        # signature -> {"graph", "xla", "xla_function", "done", "calls", "graph_calls"}
        self._tiers = {}
        self._lock = threading.Lock()

        def step(x, context, weights, momentums, velocities, iterations):
            loss, grads = _loss_and_grads(flow, variables, x, context, optimizer)
            _adam_update(optimizer, grads, (weights, momentums, velocities, iterations),
                         layout)
            return loss
        self._step = tf.function(step, autograph=False)
        self._sharded = self._sharded_compile = None
        if shards > 1:
            body = _sharded_body(flow, variables, optimizer, layout, jit_compile=True)

            def sharded(x, context, weights, momentums, velocities, iterations):
                return body(x, context, (weights, momentums, velocities, iterations), shards)
            self._sharded = tf.function(sharded, autograph=False)
            self._sharded_compile = lambda x, context, *state: body.compile_parts(
                x, context, state, shards)

    @property
    def compiled(self):
        with self._lock:
            return bool(self._tiers) and all(t["xla"] is not None for t in self._tiers.values())

    def wait(self, timeout=None):
        """Blocks until every background compilation started so far has finished;
        returns True if all of them succeeded within `timeout` seconds."""
        for tier in list(self._tiers.values()):
            if not tier["done"].wait(timeout):
                return False
        return self.error is None

    def _signature(self, x, context):
        spec = lambda t: None if t is None else (tuple(t.shape), t.dtype)
        return spec(x), spec(context)

    def __call__(self, x, context=None):
        x = tf.convert_to_tensor(x)
        context = None if context is None else tf.convert_to_tensor(context)
        key = self._signature(x, context)
        tier = self._tiers.get(key)
        if tier is None:
            graph = self._step.get_concrete_function(x, context, *self.state)
            with light_calls():
                loss = graph(x, context, *self.state)
            # Only now: a first call that raised (an interrupt, bad data) leaves no
            # tier whose compilation never starts; the next call tries again.
            tier = self._tiers[key] = {"graph": graph, "xla": None, "xla_function": None,
                                       "done": threading.Event(), "calls": {},
                                       "graph_calls": 1}
            threading.Thread(target=self._compile, args=(tier, x, context),
                             name="kerasflows-xla-compile", daemon=True).start()
            # A script that ends while XLA compiles waits for it (at most a minute)
            # rather than tearing the interpreter down under a running compilation.
            atexit.register(tier["done"].wait, 60)
            return loss
        if self.graph_steps is None:
            name = "graph" if tier["xla"] is None else "xla"
        elif tier["graph_calls"] < self.graph_steps:
            name = "graph"                 # even if XLA is done: exactly N graph calls
        else:
            tier["done"].wait()            # a failed compilation keeps the graph
            name = "graph" if tier["xla"] is None else "xla"
        if name == "graph":
            tier["graph_calls"] += 1
        call = tier["calls"].get(name)
        if call is None:
            call = tier["calls"][name] = self._flat_call(tier[name], x, context)
        if name == "xla":
            return call(x, context)
        with light_calls():        # the options the graph was first instantiated with
            return call(x, context)

    def _flat_call(self, fn, x, context):
        """`fn(x, context, *self.state)` with the state's flat inputs bound once.

        The state's flat inputs are its variables' resource handles, which
        never change; the structured call flattens and checks all ~35
        arguments on every step (about 0.2 ms: MAF on 2-D data, batch 512,
        1.84 -> 1.63 ms a step, same-process A/B). The returned call has
        `flat = True`; if this TensorFlow's `ConcreteFunction` does not
        flatten the arguments as expected, it is the structured call.
        """
        def structured(x, context):
            return fn(x, context, *self.state)
        structured.flat = False
        try:
            handles = [v.handle for v in tf.nest.flatten(self.state)]
            data = [t for t in (x, context) if t is not None]
            flat = fn.function_type.unpack_inputs(fn.function_type.bind(x, context, *self.state))
            if (len(flat) != len(data) + len(handles)
                    or any(a is not b for a, b in zip(flat[len(data):], handles))):
                return structured
            captured = fn.captured_inputs
        except Exception:  # noqa: BLE001 (another TensorFlow: keep the public call)
            return structured

        def call(x, context):
            data = [x] if context is None else [x, context]
            return fn._call_flat(data + handles, captured)
        call.flat = True
        return call

    def _compile(self, tier, x, context):
        try:
            weights, momentums, velocities, iterations = self.state
            copy = lambda v: tf.Variable(v.read_value(), trainable=v.trainable)
            stand_in = ([copy(v) for v in weights], [copy(v) for v in momentums],
                        [copy(v) for v in velocities], copy(iterations))
            graph = tier["graph"]
            if self._sharded is None:
                xla = tf.function(lambda *args: graph(*args), jit_compile=True, autograph=False)
                xla(x, context, *stand_in)                 # XLA compiles here
            else:
                xla = self._sharded
                self._sharded_compile(x, context, *stand_in)   # the parts compile here
                xla(x, context, *stand_in)     # and the step's graph is made (~0.1 s)
            tier["xla_function"] = xla
            compiled = xla.get_concrete_function(x, context, *self.state)
            with self._lock:
                tier["xla"] = compiled
        except Exception as exc:  # noqa: BLE001 (the graph tier keeps training)
            self.error = exc
        finally:
            tier["done"].set()


def _leaf_signature(t):
    """A hashable description of one data leaf, batch size left out."""
    if t is None:
        return None
    return (tuple(t.shape[1:]), t.dtype)


def _structure(data):
    """The nesting of `data` (tuples, lists, dicts), hashable; leaves as "."."""
    if isinstance(data, (tuple, list)):
        return (type(data).__name__,) + tuple(_structure(d) for d in data)
    if isinstance(data, dict):
        return ("dict",) + tuple((k, _structure(data[k])) for k in sorted(data))
    return "."


class FlatCalls:
    """Calls a `tf.function` of one (possibly nested) batch argument through its
    flat inputs: `FlatCalls(fn)(data)` returns `fn(data)`.

    A `tf.function` call looks its traced graph up by hashing the call's
    whole signature, captured variables included (a flow's weights, its
    optimizer's slots: ~100 of them for a 5-layer flow; in a cProfile of
    `fit` for MAF on 2-D data, the largest Python cost of a step). Here the
    graph is traced once per kind of batch (structure, dtypes and
    sizes but the batch dimension, which is left unknown, as Keras'
    `reduce_retracing` does; XLA still compiles each batch size once) and
    called with the batch's tensors and the captured inputs bound once. Unless
    `fn` is XLA-compiled, the calls are made in `graph_calls.light_calls()`
    (a shorter first call: TensorFlow's graph optimiser runs on it).

    Attributes:
        traces: number of graphs traced so far.
    """

    def __init__(self, fn):
        self._fn = fn
        self._light = not getattr(fn, "_jit_compile", False)
        self._calls = {}
        self.traces = 0

    def __call__(self, data):
        leaves = [None if t is None else tf.convert_to_tensor(t) for t in tf.nest.flatten(data)]
        key = (_structure(data), tuple(_leaf_signature(t) for t in leaves))
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = self._trace(data, leaves)
        if self._light:     # every call: a graph is instantiated once per set of options
            with light_calls():
                return call(data, leaves)
        return call(data, leaves)

    def _trace(self, data, leaves):
        """Traces `fn` for this kind of batch; returns `call(data, leaves)`."""
        spec = tf.nest.pack_sequence_as(data, [
            None if t is None else tf.TensorSpec([None, *t.shape[1:]] if t.shape.rank else [],
                                                 t.dtype) for t in leaves])
        fn = self._fn.get_concrete_function(spec)
        self.traces += 1
        captured = fn.captured_inputs
        if len(fn.inputs) - len(captured) != sum(t is not None for t in leaves):
            # another TensorFlow: the structured call
            return lambda data, leaves: fn(tf.nest.pack_sequence_as(data, leaves))
        return lambda data, leaves: fn._call_flat([t for t in leaves if t is not None], captured)


class FlatStepCalls(FlatCalls):
    """Keras' train (or test) function for `fit` / `evaluate`: `FlatCalls` of the step.

    `Flow.make_train_function` / `make_test_function` use it in place of
    Keras' own (see `Flow.flat_step_calls`): `function(iterator)` takes the
    next `steps_per_execution` batches from `iterator` and runs
    `step_fn(batch)` (Keras' `train_step` / `test_step`, compiled with XLA if
    `jit_compile`) on each, as Keras does, and returns the last logs; each
    call goes through the step's flat inputs (`FlatCalls`) instead of Keras'
    `tf.function` call.
    """

    def __init__(self, model, step_fn, jit_compile):
        super().__init__(tf.function(step_fn, jit_compile=bool(jit_compile), autograph=False))
        self.model = model

    def __call__(self, iterator):
        logs = None
        for _, data in zip(range(self.model.steps_per_execution), iterator):
            logs = super().__call__(data)
        if logs is None:
            raise StopIteration
        return logs


class FlatStepFunctions:
    """A `keras.Model` mixin: `fit` / `evaluate` call the step through
    `FlatStepCalls` (see `flat_step_calls`), and the optimizer is built before
    the train step's first trace. `Flow` and `VariationalFlow` use it.

    Without a distribution strategy Keras leaves building the optimizer to the
    step's first trace, and a `tf.function` whose trace makes variables is
    traced twice: the first `fit` call of a conditional 5-layer NSF coupling
    flow on 2-D data took 7.95 s that way against 5.16 s
    (`benchmarks/first_step.py --mode fit`, README).
    """

    #: Run `fit` / `evaluate` batches through `FlatStepCalls` (the same step,
    #: called through its flat inputs, without Keras' per-call signature
    #: lookup, and as a plain graph with `graph_calls.light_calls`) when nothing
    #: needs Keras' own loop: no distribution strategy, `steps_per_execution=1`
    #: and not `run_eagerly`. False: always Keras' loop.
    flat_step_calls = True

    def _under_strategy(self):
        """True if the model was made, or is used, in a distribution strategy's scope."""
        return bool(self._distribute_strategy) or tf.distribute.has_strategy()

    def _flat_calls_apply(self):
        return (self.flat_step_calls and not self.run_eagerly and self.steps_per_execution == 1
                and not self._under_strategy())

    def _step_function(self, name, step_fn, keras_make, force):
        """`self.<name>` (the train or test function), made if needed: Keras' own
        (`keras_make`), or (see `flat_step_calls`) a `FlatStepCalls` of `step_fn`."""
        if getattr(self, name) is not None and not force:
            return getattr(self, name)
        if not self._flat_calls_apply():
            return keras_make(force=force)
        setattr(self, name, FlatStepCalls(self, step_fn, self.jit_compile))
        return getattr(self, name)

    def make_train_function(self, force=False):
        """Keras' train function, or (see `flat_step_calls`) a `FlatStepCalls` of
        `train_step`; the optimizer is built first (its slots made for the
        model's trainable weights) if every layer is built and it is not yet."""
        if (self.optimizer is not None and not self.optimizer.built
                and not self._under_strategy()
                and all(layer.built for layer in self._flatten_layers())):
            self.optimizer.build(self.trainable_variables)
        return self._step_function("train_function", self.train_step,
                                   super().make_train_function, force)

    def make_test_function(self, force=False):
        """Keras' test function, or (see `flat_step_calls`) a `FlatStepCalls` of `test_step`."""
        return self._step_function("test_function", self.test_step,
                                   super().make_test_function, force)
