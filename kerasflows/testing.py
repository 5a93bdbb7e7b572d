"""`check_flow_layer`: a public check that a layer is a valid flow transformation.

Run it on your own `FlowLayer` subclasses; the kerasflows test suite runs it on
every layer it ships.

Example:

```python
from kerasflows.testing import check_flow_layer
report = check_flow_layer(MyLayer(dtype="float64"), event_dim=3)
print(report["logdet_error"])
```
"""

import keras
import numpy as np
import tensorflow as tf

from kerasflows.layers.base import FlowLayer
from kerasflows.layers.checks import check_bool, check_float, check_positive_int

__all__ = ["check_flow_layer", "FlowLayerCheckError", "perturb_weights"]


class FlowLayerCheckError(AssertionError):
    """Raised by `check_flow_layer` when a layer fails a check."""


def perturb_weights(layer, scale=0.1, seed=0):
    """Adds N(0, scale^2) noise to every trainable weight of `layer` (in place).

    Freshly built layers often start at the identity (zero-initialised last
    layers), which hides bugs; tests move them away first.
    """
    scale = check_float("scale", scale, lambda v: v >= 0, ">= 0")
    rng = np.random.default_rng(seed)
    for w in layer.trainable_weights:
        w.assign(w.numpy() + scale * rng.standard_normal(w.shape).astype(w.dtype))


def _fail(layer, what):
    raise FlowLayerCheckError(f"{type(layer).__name__} '{layer.name}': {what}")


def _inputs(layer, event_dim, context_dim, batch, seed, scale, inputs=None):
    rng = np.random.default_rng(seed + 1)
    dtype = layer.compute_dtype
    if inputs is None:
        inputs = scale * rng.standard_normal((batch, event_dim))
    elif np.shape(inputs) != (batch, event_dim):
        raise ValueError(f"check_flow_layer: `inputs` must have shape (batch, {event_dim}); "
                         f"received shape {np.shape(inputs)}.")
    z = tf.constant(inputs, dtype)
    c = None if context_dim is None else tf.constant(rng.standard_normal((batch, context_dim)), dtype)
    return z, c


def _batch_jacobian(fn, z):
    """`d fn(z)[b] / d z[b]` as a `[batch, D, D]` array, for a row-wise `fn`.

    One gradient per output column (batch rows are independent): unlike
    `tf.GradientTape.batch_jacobian`'s pfor, this works for every op, e.g.
    ODE-solver adjoints, and takes a second where pfor took 9 (a 5-D MAF's
    sequential forward pass).
    """
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        x = fn(z)
        columns = [x[:, i] for i in range(x.shape[-1])]
    return tf.stack([tape.gradient(col, z) for col in columns], axis=1).numpy()


def _check_jacobian(layer, z, c, ld_f, atol):
    # the map alone (`transform`): a ContinuousFlow's forward_and_log_det solves the
    # exact trace too, whose gradients are second derivatives of its dynamics
    jac = _batch_jacobian(lambda v: layer.transform(v, context=c), z)
    sign, logabsdet = np.linalg.slogdet(jac.astype(np.float64))
    if not np.all(sign != 0):
        _fail(layer, "the autodiff Jacobian is singular")
    err = float(np.max(np.abs(logabsdet - ld_f.numpy())))
    if not err <= atol:                 # (NaN fails)
        _fail(layer, f"forward log-det differs from log|det J| of the autodiff Jacobian by "
                     f"{err:.3g} (> {atol:g})")
    return err


def _check_transform(layer, v, c, expected, forward, atol):
    """`transform` (the map alone, which `Flow.forward`/`Flow.inverse` call) agrees
    with the map `forward_and_log_det`/`inverse_and_log_det` gave."""
    err = float(np.max(np.abs(layer.transform(v, context=c, forward=forward).numpy()
                              - expected.numpy())))
    if not err <= atol:                 # (NaN fails)
        name = "forward" if forward else "inverse"
        _fail(layer, f"transform(forward={forward}) differs from {name}_and_log_det's map by "
                     f"{err:.3g} (> {atol:g})")


def _check_gradients(layer, z, c):
    with tf.GradientTape() as tape:
        x, ld = layer.forward_and_log_det(z, context=c)
        loss = tf.reduce_sum(x * x) + tf.reduce_sum(ld)
        if not layer.forward_only:
            zz, ild = layer.inverse_and_log_det(x, context=c)
            loss += tf.reduce_sum(ild) + tf.reduce_sum(zz)
    grads = tape.gradient(loss, layer.trainable_weights)
    for w, g in zip(layer.trainable_weights, grads):
        if g is None:
            _fail(layer, f"no gradient reaches trainable weight {w.path}")
        if not np.all(np.isfinite(tf.convert_to_tensor(g).numpy())):
            _fail(layer, f"non-finite gradient for weight {w.path}")


def _check_config(layer, z, c, x, atol):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    clone.ensure_built(layer.event_dim)
    clone.set_weights(layer.get_weights())
    x2, _ = clone.forward_and_log_det(z, context=c)
    err = float(np.max(np.abs(x2.numpy() - x.numpy())))
    if not err <= atol:                 # (NaN fails)
        _fail(layer, f"a layer rebuilt from get_config() differs by {err:.3g}")
    ser = keras.saving.serialize_keras_object(layer)
    keras.saving.deserialize_keras_object(ser)


def check_flow_layer(layer, event_dim, context_dim=None, batch=16, seed=0, perturb=0.1,
                     scale=1.5, inverse_atol=None, logdet_atol=None, check_config=True,
                     inputs=None):
    """Checks that `layer` is a valid flow transformation; returns the measured errors.

    Checks, on a random batch (`scale` times standard normal) after moving the
    trainable weights by N(0, `perturb`^2):
      * forward (and inverse) outputs and log-dets are finite;
      * `inverse(forward(z))` returns `z` (skipped for forward-only layers);
      * the forward and inverse log-dets are negatives of each other;
      * `transform` (the map alone, as `Flow.forward`/`Flow.inverse` run it) gives
        the maps of `forward_and_log_det` and `inverse_and_log_det`;
      * the forward log-det equals log|det| of the autodiff Jacobian of
        `transform`;
      * gradients reach every trainable weight and are finite;
      * the layer rebuilt from `get_config()` computes the same transform.

    Tolerances default to 1e-5 (round trip) / 1e-6 (log-det) in float64 and
    5e-3 / 1e-3 in float32 (a float32 spline inverse solves a quadratic per bin).

    Args:
        layer: a `FlowLayer` (built or not).
        event_dim: the event dimension to build and test at.
        context_dim: context size for conditional layers (default: the layer's).
        batch, seed, perturb, scale: the random test batch and weight noise.
        inverse_atol, logdet_atol: tolerances overriding the defaults.
        check_config: also check the config round trip.
        inputs: an optional `[batch, event_dim]` array used as the test batch
            instead of the random one (e.g. values in (0, 1) for `Logit`).

    Returns:
        dict with `inverse_error`, `logdet_error`, `logdet_sum_error`.

    Raises:
        FlowLayerCheckError: (an AssertionError) naming the failed check.
        TypeError: if `layer` is not a `FlowLayer`.
    """
    if not isinstance(layer, FlowLayer):
        raise TypeError(f"check_flow_layer needs a kerasflows.layers.FlowLayer; "
                        f"received {type(layer).__name__}.")
    event_dim = check_positive_int("event_dim", event_dim)
    if inputs is None:
        batch = check_positive_int("batch", batch)
    elif len(inputs) == 0:
        raise ValueError(f"`inputs` must hold at least one row; received shape "
                         f"{np.shape(inputs)}.")
    context_dim = layer.context_dim if context_dim is None else context_dim
    f64 = layer.compute_dtype == "float64"
    if inverse_atol is None:
        inverse_atol = 1e-5 if f64 else 5e-3
    if logdet_atol is None:
        logdet_atol = 1e-6 if f64 else 1e-3
    # (NaN took every check as passed: nan > atol is False; a negative one failed all)
    check_config = check_bool("check_config", check_config)     # ("no" was True)
    inverse_atol = check_float("inverse_atol", inverse_atol, lambda v: v >= 0, ">= 0")
    logdet_atol = check_float("logdet_atol", logdet_atol, lambda v: v >= 0, ">= 0")
    batch = batch if inputs is None else len(inputs)
    layer.ensure_built(event_dim)
    if perturb:
        perturb_weights(layer, perturb, seed)
    z, c = _inputs(layer, event_dim, context_dim, batch, seed, scale, inputs)
    if layer.needs_data_init:
        layer.data_init(z, context=c)
    x, ld_f = layer.forward_and_log_det(z, context=c)
    if tuple(x.shape) != tuple(z.shape) or tuple(ld_f.shape) != (batch,):
        _fail(layer, f"forward returned shapes {x.shape} / {ld_f.shape}; expected "
                     f"{z.shape} / ({batch},)")
    if not (np.all(np.isfinite(x.numpy())) and np.all(np.isfinite(ld_f.numpy()))):
        _fail(layer, "forward output or log-det is not finite")
    report = {"inverse_error": None, "logdet_sum_error": None}
    if not layer.forward_only:
        z2, ld_i = layer.inverse_and_log_det(x, context=c)
        if not (np.all(np.isfinite(z2.numpy())) and np.all(np.isfinite(ld_i.numpy()))):
            _fail(layer, "inverse output or log-det is not finite")
        report["inverse_error"] = float(np.max(np.abs(z2.numpy() - z.numpy())))
        if not report["inverse_error"] <= inverse_atol:          # (NaN fails)
            _fail(layer, f"inverse(forward(z)) differs from z by {report['inverse_error']:.3g} "
                         f"(> {inverse_atol:g})")
        report["logdet_sum_error"] = float(np.max(np.abs(ld_i.numpy() + ld_f.numpy())))
        if not report["logdet_sum_error"] <= logdet_atol:
            _fail(layer, f"forward and inverse log-dets do not cancel "
                         f"(max |sum| {report['logdet_sum_error']:.3g} > {logdet_atol:g})")
    _check_transform(layer, z, c, x, True, inverse_atol)
    if not layer.forward_only:
        _check_transform(layer, x, c, z2, False, inverse_atol)
    report["logdet_error"] = _check_jacobian(layer, z, c, ld_f, logdet_atol)
    _check_gradients(layer, z, c)
    if check_config:
        _check_config(layer, z, c, x, inverse_atol)
    return report
