"""Keras Adam's update done inside a compiled train step, on the optimizer's own
variables: per weight (TF's fused kernel) or *packed*, one pair of moment
vectors over all the weights (see `adam_layout`)."""

import keras
import numpy as np
import tensorflow as tf

__all__ = ["PACKED_ADAM_NAME", "plain_adam", "packed_size", "adam_layout", "adam_state",
           "adam_update", "adam_constants", "packed_adam_step", "flat_gradient",
           "fused_adam_slots", "fused_adam_apply"]


#: Name of the one-vector reference a packed Adam is built on (see `adam_layout`).
PACKED_ADAM_NAME = "kerasflows_packed_weights"


def plain_adam(optimizer, variables):
    """True if `optimizer` is a plain Keras Adam whose update the compiled steps
    reproduce (same formula, same state; a sparse gradient taken dense, see
    `adam_update`), on same-dtype weights."""
    plain = (type(optimizer) is keras.optimizers.Adam and not optimizer.amsgrad
             and optimizer.weight_decay is None and not optimizer.use_ema
             and optimizer.clipnorm is None and optimizer.clipvalue is None
             and optimizer.global_clipnorm is None and not optimizer.gradient_accumulation_steps
             and optimizer.loss_scale_factor is None)
    return (plain and not tf.distribute.has_strategy() and bool(variables)
            and all(v.dtype == variables[0].dtype for v in variables))


def packed_size(optimizer):
    """Length of the packed layout `optimizer` was built on, or None."""
    refs = getattr(optimizer, "_trainable_variables", None) or []
    if len(refs) == 1 and refs[0].name == PACKED_ADAM_NAME and len(refs[0].shape) == 1:
        return int(refs[0].shape[0])
    return None


def adam_layout(optimizer, variables):
    """Builds `optimizer` if needed and returns how a step updates it.

    "packed": a plain Adam built here (or by an earlier step on the same
    flow) on one vector reference of all the weights' sizes, so its moment
    estimates are two vectors in `variables` order and a compiled step
    updates 2 optimizer slots instead of 2 per weight; "per_variable": a plain
    Adam already built for `variables` (TF's fused kernel, one op per weight);
    None: any other optimizer (its own `apply_gradients`).
    """
    n = sum(int(np.prod(v.shape)) for v in variables)
    packed = packed_size(optimizer)
    owner = tuple(id(v) for v in variables)
    if plain_adam(optimizer, variables):
        if not optimizer.built:
            optimizer.build([keras.Variable(np.zeros(n), dtype=variables[0].dtype,
                                            name=PACKED_ADAM_NAME)])
            optimizer._kerasflows_packed_for = owner
            return "packed"
        if packed == n and getattr(optimizer, "_kerasflows_packed_for", None) == owner:
            return "packed"
    if packed is not None and getattr(optimizer, "_kerasflows_packed_for", None) == owner:
        raise ValueError(
            "This optimizer was built by make_train_step on this flow's packed layout and is "
            "no longer a plain Adam (clipping, weight decay, EMA, AMSGrad or another loss "
            "scale), which that layout cannot update: give the flow a new optimizer.")
    if packed is not None:
        raise ValueError(
            f"This optimizer was built by make_train_step on a packed layout of another "
            f"flow's {packed} weights (this flow has {n}); its moments and step count are "
            "that flow's. Give each flow its own optimizer.")
    if optimizer.built:
        _check_built_for(optimizer, variables)
    optimizer.build(variables)
    if plain_adam(optimizer, variables) and len(optimizer._momentums) == len(variables):
        return "per_variable"
    return None


def _check_built_for(optimizer, variables):
    """Raises a ValueError if the built `optimizer` tracks other weights than
    `variables` (Keras' own step would fail on them later; a fused update would
    silently take another flow's moments)."""
    known = getattr(optimizer, "_trainable_variables_indices", None)
    if known is None:
        return
    foreign = [v for v in variables if optimizer._var_key(v) not in known]
    if foreign:
        raise ValueError(
            f"This optimizer was built for other weights (another flow's: it does not know "
            f"{foreign[0].path!r}); its moments and step count are theirs. Give each flow its "
            "own optimizer.")


def fused_adam_slots(optimizer, variables):
    """`(m, v)`, the moment variables of `variables` in order, if a Keras train
    step may update them with `fused_adam_apply`: `optimizer` is a plain Adam
    (`plain_adam`) built per weight on `variables`, none of which has a
    constraint or takes its gradient as its value. Else None (the optimizer's
    own `apply_gradients`)."""
    if not (optimizer is not None and optimizer.built and plain_adam(optimizer, variables)
            and packed_size(optimizer) is None
            and all(getattr(v, "constraint", None) is None for v in variables)
            and not any(getattr(v, "overwrite_with_gradient", False) for v in variables)):
        return None
    try:
        index = [optimizer._get_variable_index(v) for v in variables]
    except (KeyError, ValueError, AttributeError):
        return None     # built on other weights: Keras' update says so
    return ([optimizer._momentums[i] for i in index],
            [optimizer._velocities[i] for i in index])


def fused_adam_apply(optimizer, grads, variables, slots):
    """Keras Adam's update of `variables` by `grads`, through TF's fused kernel
    (`adam_update`'s "per_variable" layout) on the optimizer's own moments
    `slots` (`fused_adam_slots`), its iteration count advanced: what
    `optimizer.apply_gradients` does, with 3 ops a weight to trace and compile
    instead of about 39 (a 5-layer NSF's 30 weights). A gradient of None (a
    weight the loss does not reach) goes to `apply_gradients` instead, which
    skips that weight and warns."""
    if any(g is None for g in grads):
        optimizer.apply_gradients(zip(grads, variables))
        return
    adam_update(optimizer, grads, adam_state(optimizer, variables, slots), "per_variable")


def adam_state(optimizer, variables, slots=None):
    """The `tf.Variable`s an Adam step updates: `(weights, m, v, iterations)`
    (`m` and `v` one vector each in the packed layout); `slots`, the moments
    `(m, v)` to take (default: the optimizer's, in the order it was built)."""
    momentums, velocities = slots or (optimizer._momentums, optimizer._velocities)
    return ([w.value for w in variables], [m.value for m in momentums],
            [v.value for v in velocities], optimizer.iterations.value)


def adam_update(optimizer, grads, state, layout):
    """Keras Adam's update of `state` (`adam_state(...)`: the optimizer's own
    variables, or stand-ins of the same shapes, see `BackgroundCompiledStep`).

    Same formula as `keras.optimizers.Adam.update_step` (Kingma & Ba 2015,
    with the bias correction folded into the step size):
    `m += (1 - b1)(g - m)`, `v += (1 - b2)(g^2 - v)`,
    `w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)`. A weight the
    loss does not reach (gradient None) and its moments stay as they are. A
    `tf.IndexedSlices` gradient is taken dense (the pieces of one row summed
    before `g^2`): Adam of the gradient, where Keras squares each piece and sums
    the squares into `v`.
    "per_variable" runs TF's fused `ResourceApplyAdam` kernel once per weight;
    "packed" does the update as one vector over all weights, so the compiled
    step reads and writes 2 moment variables, not 2 per weight (every
    variable costs the XLA launch some microseconds: MAF 2-D, batch 512,
    30 weights, 2.0 -> 1.7 ms per step, same-process A/B).
    """
    weights, momentums, velocities, iterations = state
    dtype = weights[0].dtype
    constants = adam_constants(optimizer, iterations, dtype)
    b1, b2, eps, lr, b1_power, b2_power = constants
    if layout == "per_variable":
        for var, grad, m, v in zip(weights, grads, momentums, velocities):
            if grad is not None:
                tf.raw_ops.ResourceApplyAdam(
                    var=var.handle, m=m.handle, v=v.handle, beta1_power=b1_power,
                    beta2_power=b2_power, lr=lr, beta1=b1, beta2=b2, epsilon=eps,
                    grad=tf.cast(grad, dtype))
    else:   # packed: `m` and `v` are one vector each over all weights
        g, reached = flat_gradient(weights, grads)
        sizes = [int(np.prod(w.shape)) for w in weights]
        delta = packed_adam_step(g, reached, momentums[0], velocities[0], constants, sizes)
        for var, d, r in zip(weights, tf.split(delta, sizes), reached):
            if r:
                var.assign_sub(tf.reshape(d, var.shape))
    iterations.assign_add(1)


def adam_constants(optimizer, iterations, dtype):
    """`(beta_1, beta_2, epsilon, learning_rate, beta_1^t, beta_2^t)` for the step
    after `iterations`, as `dtype` tensors."""
    t = tf.cast(iterations + 1, dtype)
    b1, b2, eps = (tf.constant(getattr(optimizer, name), dtype)
                   for name in ("beta_1", "beta_2", "epsilon"))
    lr = tf.cast(optimizer.learning_rate, dtype)
    return b1, b2, eps, lr, tf.pow(b1, t), tf.pow(b2, t)


def packed_adam_step(g, reached, m, v, constants, sizes):
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


def flat_gradient(weights, grads):
    """`(vector, reached)`: `grads` (one per weight, None where not reached) as one
    vector in the packed layout's order (zeros where not reached), and which
    weights they reach."""
    dtype = weights[0].dtype
    g = tf.concat([tf.reshape(tf.zeros(w.shape, dtype) if gr is None else tf.cast(gr, dtype),
                              [-1]) for w, gr in zip(weights, grads)], 0)
    return g, tuple(gr is not None for gr in grads)
