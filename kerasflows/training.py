"""Training helpers: checks of the data given to `Flow.fit` (done once before
training) and `make_train_step`, a compiled maximum-likelihood step for
hand-written training loops."""

import keras
import numpy as np
import tensorflow as tf

from kerasflows.layers.base import check_event_dim

__all__ = ["prepare_fit_data", "check_finite", "make_train_step"]


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
        check_event_dim("Flow", np.asarray(x), flow.event_dim)
        check_event_dim("Flow", np.asarray(c), flow.context_dim, what="context")
        return (x, c)
    check_finite(name, data)
    check_event_dim("Flow", np.asarray(data), flow.event_dim)
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


def _fused_adam_ok(optimizer, variables):
    """True if `optimizer` is a plain Keras Adam that TF's fused kernel reproduces exactly."""
    plain = (type(optimizer) is keras.optimizers.Adam and not optimizer.amsgrad
             and optimizer.weight_decay is None and not optimizer.use_ema
             and optimizer.clipnorm is None and optimizer.clipvalue is None
             and optimizer.global_clipnorm is None and not optimizer.gradient_accumulation_steps
             and optimizer.loss_scale_factor is None)
    return (plain and not tf.distribute.has_strategy()
            and all(v.dtype == variables[0].dtype for v in variables)
            and len(getattr(optimizer, "_momentums", ())) == len(variables))


def _fused_adam_update(optimizer, grads, variables):
    """Keras Adam's update done by TF's fused `ResourceApplyAdam` kernel, one op per variable.

    Same formula as `keras.optimizers.Adam.update_step` (Kingma & Ba 2015
    with the bias correction folded into the step size) and the same slot
    variables, so the optimizer's state stays valid; far fewer ops to trace
    and compile than the generic per-variable update.
    """
    dtype = variables[0].dtype
    t = tf.cast(optimizer.iterations + 1, dtype)
    consts = {name: tf.constant(getattr(optimizer, name), dtype)
              for name in ("beta_1", "beta_2", "epsilon")}
    lr = tf.cast(optimizer.learning_rate, dtype)
    b1_power, b2_power = tf.pow(consts["beta_1"], t), tf.pow(consts["beta_2"], t)
    for var, grad, m, v in zip(variables, grads, optimizer._momentums, optimizer._velocities):
        if grad is None:          # a weight the loss does not reach stays as it is
            continue
        tf.raw_ops.ResourceApplyAdam(
            var=var.value.handle, m=m.value.handle, v=v.value.handle, beta1_power=b1_power,
            beta2_power=b2_power, lr=lr, beta1=consts["beta_1"], beta2=consts["beta_2"],
            epsilon=consts["epsilon"], grad=tf.cast(grad, dtype))
    optimizer.iterations.assign_add(1)


def make_train_step(flow, optimizer, jit_compile=True):
    """Returns `step(x, context=None) -> loss`: one maximum-likelihood optimizer step.

    The step is a `tf.function` (XLA-compiled with `jit_compile=True`) that
    computes the mean negative log-likelihood of the batch (plus any layer
    losses, as `Flow.compute_loss`), its gradient and the optimizer update
    in one compiled call; the returned loss (a scalar tensor, nats per
    example) is the only value that leaves it. A plain `keras.optimizers.Adam`
    (no clipping, weight decay, EMA, AMSGrad or gradient accumulation)
    updates through TF's fused Adam kernel, with the same formula and the
    optimizer's own slot variables (fewer ops: faster tracing and
    compilation); any other optimizer runs its usual `apply_gradients`.
    Each new batch shape traces (and compiles) again, so feed batches of
    one size. Layers that need data-dependent initialisation (`ActNorm`)
    must be initialised first with `flow.initialize(x)`.

    Example:

    ```python
    flow = kerasflows.models.MAF(2)
    step = make_train_step(flow, keras.optimizers.Adam(1e-3))
    for xb in batches:
        loss = float(step(xb))
    ```

    Args:
        flow: a `kerasflows.Flow`.
        optimizer: a Keras 3 optimizer (built here for the flow's weights).
        jit_compile: compile the step with XLA.

    Returns:
        The compiled step function.
    """
    variables = list(flow.trainable_variables)
    optimizer.build(variables)
    fused = _fused_adam_ok(optimizer, variables)

    def step(x, context=None):
        inputs = x if context is None else (x, context)
        with tf.GradientTape() as tape:
            loss = flow.compute_loss(y_pred=flow(inputs, training=True))
        grads = tape.gradient(loss, variables)
        if fused:
            _fused_adam_update(optimizer, grads, variables)
        else:
            optimizer.apply_gradients(zip(grads, variables))
        return loss
    # No autograph: the step has no Python control flow on tensors, and converting
    # it (and everything it calls) took about a third of the tracing time.
    return tf.function(step, jit_compile=bool(jit_compile), autograph=False)
