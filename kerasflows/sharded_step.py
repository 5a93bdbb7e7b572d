"""The loss and gradient of a batch, and the body of `make_train_step(...,
shards > 1)`: the batch's parts computed by calls of one compiled function
at the same time, then one compiled update; `check_shards` says whether a
flow may be trained that way (not one that updates state while it trains,
`training_state`, nor under a distribution strategy)."""

import keras
import numpy as np
import tensorflow as tf

from kerasflows.layers.base import check_event_dim, check_positive_int, context_rows
from kerasflows.packed_adam import adam_constants, adam_update, flat_gradient, packed_adam_step

__all__ = ["step_inputs", "loss_and_grads", "loss_and_grads_at", "shard_rows", "sharded_body",
           "check_shards", "training_state"]


def step_inputs(flow, x, context=None):
    """`x` and `context` as a train step takes them: tensors of the flow's dtype
    (from arrays, nested lists or integers, as `Flow.log_prob` takes them), their
    shapes checked on the whole batch (`Flow._prepare`: `[batch, event_dim]`, a
    context `[batch, context_dim]` or one row shared by all, given exactly when
    the flow is conditional) and a batch of no rows refused. Runs at the Python
    boundary, before the compiled step: a conversion and static shape checks."""
    x, context = flow._prepare(x, context)
    check_batch_rows(x)
    return x, context


def check_batch_rows(x):
    """Refuses, when a train step is traced, a batch known to have no rows: its
    mean NLL is NaN, and the optimizer would still count a step."""
    if x.shape.rank and x.shape[0] == 0:
        raise ValueError(f"The train step received a batch with no rows (shape "
                         f"{tuple(x.shape)}); give each step at least one row.")


def loss_and_grads(flow, variables, x, context, optimizer):
    """The batch's mean NLL (plus layer losses, as `Flow.compute_loss`) and its
    gradient with respect to `variables` (of the loss as `optimizer.scale_loss`
    scales it: a `LossScaleOptimizer` unscales the gradient when it applies it).
    A batch of no rows (static shape) raises (`check_batch_rows`)."""
    check_batch_rows(x)
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


def loss_and_grads_at(flow, variables, values, x, context, optimizer):
    """`loss_and_grads` with the flow's `variables` taking `values` (tensors of
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


def sharded_body(flow, variables, optimizer, layout, jit_compile):
    """`body(x, context, state, shards) -> loss`: one optimizer step whose batch is
    split into `shard_rows(batch, shards)` parts, each part's loss and gradient
    computed by its own call of one compiled function (with no data between
    them, TensorFlow's executor runs those calls at the same time, one per
    inter-op thread), then combined, weighted by rows, and applied by one more
    compiled call. `state` is `adam_state(...)` (or stand-ins of the same
    shapes) for an Adam `layout`, None for an optimizer's own `apply_gradients`.

    With the packed Adam layout the compiled calls take no weight variables:
    the step's graph reads the weights once and hands their values to both
    parts (the flow runs on them in a `keras.StatelessScope`,
    `loss_and_grads_at`); the update call returns the new weights as one
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
            return loss_and_grads(flow, variables, x, context, optimizer)
        loss, grads = loss_and_grads_at(flow, variables, weights, x, context, optimizer)
        # One vector out instead of one tensor per weight: each output costs the
        # launch and the executor something.
        vector, reached["packed"] = flat_gradient(variables, grads)
        return loss, vector

    @tf.function(jit_compile=bool(jit_compile), autograph=False)
    def update(rows, losses, grads, state, reached, weights=None):
        n = sum(rows)
        frac = [tf.constant(r / n, losses[0].dtype) for r in rows]
        loss = tf.add_n([f * l for f, l in zip(frac, losses)])
        if packed:      # `state` without the weights, which come in as `weights`
            g = tf.add_n([tf.cast(f, g.dtype) * g for f, g in zip(frac, grads)])
            momentums, velocities, iterations = state
            delta = packed_adam_step(g, reached, momentums[0], velocities[0],
                                      adam_constants(optimizer, iterations, g.dtype),
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
            adam_update(optimizer, combined, state, layout)
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
        # the whole batch's shapes, before any part's (a (5,) context was named as (3,))
        check_batch_rows(x)
        check_event_dim("Flow", x, flow.event_dim)
        if context is not None:
            check_event_dim("Flow", context, flow.context_dim, what="context")
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


def check_shards(flow, shards):
    """`shards` as an integer >= 1. Raises a ValueError for `shards > 1` and a flow
    that updates state while it trains (`training_state`; a seed generator's
    state, such as a `Dropout`'s, excepted: each part writes its draw after
    it, `loss_and_grads_at`), and for any `shards` under a distribution strategy."""
    shards = check_positive_int("shards", shards)
    state = [v for v in training_state(flow) if not is_seed_state(v)] if shards > 1 else []
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


def training_state(flow):
    """Non-trainable variables a training call may update: all but the flow's own
    sampling seed (`flow.sample_seed`, which only sampling draws from) and the
    flow layers' `static_weights()` (a context encoder's count). A `Dropout`'s
    seed generator in the context encoder is such state: each training call
    draws from it."""
    static = {id(v) for layer in flow.flow_layers for v in layer.static_weights()}
    sample_seed = getattr(flow, "sample_seed", None)
    if sample_seed is not None:
        static.add(id(sample_seed.state))
    return [v for v in flow.non_trainable_variables if id(v) not in static]


def is_seed_state(variable):
    """True for a `keras.random.SeedGenerator`'s state variable."""
    return variable.path.endswith("seed_generator_state")
