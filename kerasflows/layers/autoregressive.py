"""Affine autoregressive layers: `MaskedAutoregressive` (MAF) and `InverseAutoregressive` (IAF).

Each dimension is transformed by an elementwise bijector whose parameters a
`MADE` computes from the preceding dimensions (and the context). The
transform is TFP's `tfb.MaskedAutoregressiveFlow`, whose conditioner sees
the data side `x`: the inverse (density) takes one network pass; the
forward (sampling) is solved one dimension at a time, which `MADE.solve`
does (from 4 dimensions on) for about the cost of one pass more. IAF is its
inverse, so sampling is the one-pass direction.
"""

import weakref

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from kerasflows.layers.base import FlowLayer, any_batch
from kerasflows.layers.checks import shared_context
from kerasflows.layers.coupling import (check_direction, check_max_log_scale,
                                        directed_affine, directed_affine_bijector, soft_clamp)
from kerasflows.layers.made import MADE
from kerasflows.layers.nets import check_activation, check_hidden_units

tfb = tfp.bijectors

__all__ = ["AutoregressiveLayer", "MaskedAutoregressive", "InverseAutoregressive",
           "check_max_log_scale"]


def memoized(fn):
    """Wraps a one-argument `fn` so a repeated call on the same tensor reuses the result.

    TFP bijectors call their conditioner once for the transform and once
    more for its log-det, on the very same tensor; the memo makes that one
    network evaluation in the graph (so also one backward pass). It holds the
    tensor weakly: an IAF's last call is on the output its inverse solved, and
    held, that output kept TFP's cache entry for the input alive, so a held view
    (`flow.distribution`) gave the same data the weights of before training.
    """
    last = []

    def wrapped(y, *unused_args, **unused_kwargs):
        if last and last[0]() is y:
            return last[1]
        out = fn(y)
        last[:] = [weakref.ref(y), out]
        return out
    return wrapped


class AutoregressiveLayer(FlowLayer):
    """Base of autoregressive layers driven by a `MADE` and `tfb.MaskedAutoregressiveFlow`.

    Subclasses set `params_per_dim` and implement `transform_kwargs(params_fn)`,
    which returns the keyword arguments of `tfb.MaskedAutoregressiveFlow`
    (`params_fn(y)` gives the MADE's `[batch, D, params_per_dim]` output),
    and `elementwise(params, v, inverse)`, the layer's own map given the
    MADE's output parameters first (`[batch, params_per_dim, D]`).

    Args:
        hidden_units: sizes of the MADE's hidden layers.
        activation: the MADE's activation (a Keras activation name).
        context_dim: size of the context, or None.
    """

    eval_in_blocks = True

    params_per_dim = 2

    def __init__(self, hidden_units=(64, 64), activation="relu", context_dim=None, **kwargs):
        super().__init__(context_dim=context_dim, **kwargs)
        self.hidden_units = check_hidden_units(hidden_units)
        self.activation = check_activation(activation)

    def build_flow(self, event_dim):
        self.made = MADE(self.params_per_dim, self.hidden_units, self.activation,
                         context_dim=self.context_dim, dtype=self.conditioner_dtype_policy,
                         name="made")
        self.made.build((None, event_dim))

    def params_fn(self, context):
        """Returns a memoized `f(y) -> [batch, D, params_per_dim]` (the MADE on `y`)."""
        # the context's rows checked against y's here, not in the MADE's call, which
        # Keras' message for a layer's call would wrap
        return memoized(lambda y: self._params(
            y, None if context is None else shared_context(context, y), params_first=False))

    def transform_kwargs(self, params_fn):
        raise NotImplementedError

    def bijector(self, context=None):
        self.check_bijector_context(context)
        # one dimension is one pass: unrolled, as TFP's while_loop refused a 1-D spline's
        # forward, whose output comes back [None, None] from [None, 1] rows
        return self.of_layer_dtype(tfb.MaskedAutoregressiveFlow(
            **self.transform_kwargs(any_batch(self.params_fn(context))),
            unroll_loop=self.event_dim == 1))

    def elementwise(self, params, v, inverse):
        """`(out, log_det [batch])` of the elementwise map, either direction, given the
        MADE's output `params [batch, params_per_dim, D]` (`made(..., params_first=True)`)."""
        raise NotImplementedError

    def _params(self, y, context, params_first=True):
        """The MADE's output on `y`, in `y`'s dtype (a mixed-precision MADE's is lower)."""
        self.check_bijector_dtype(y)
        return tf.cast(self.made(y, context=context, params_first=params_first), y.dtype)

    def one_pass(self, v, context=None):
        """The direction that needs one MADE pass on its input: the MAF inverse.

        Same map as `bijector(context).inverse`, without TFP's bookkeeping.
        """
        v, context = self.check_inputs(v, context)
        return self.elementwise(self._params(v, context), v, inverse=True)

    #: From this many dimensions on, `sequential` uses `MADE.solve`; below it, re-running
    #: the network after each dimension was faster (MAF, 10^5 samples on 2 CPU cores:
    #: solve 0.6-0.7M samples/s at 2-4 dimensions, the passes 2.0M at 2, 0.73M at 4,
    #: 0.30M at 8, where solve gives 0.59M; 64 dimensions: 15x faster).
    SOLVE_MIN_DIM = 4

    def sequential(self, v, context=None):
        """The direction solved one dimension at a time: the MAF forward.

        Output `d` depends on outputs `< d` only, so dimension `d` is mapped
        once dimensions `< d` are known. From `SOLVE_MIN_DIM` dimensions on,
        `MADE.solve` does this computing each hidden unit once (about one
        network pass in all); below it, and for a MADE with no hidden layer
        (`hidden_units=()`, a linear conditioner: one pass is one matmul),
        `D - 1` passes of the whole network in a `tf.while_loop`, each making
        one more output exact, and a last one that also gives the log-det
        (without a context the first pass is one MADE row: dimension 0's
        parameters depend on no input). Same map as `bijector(context).forward`.

        A MADE that computes in a lower precision than the layer (a mixed
        policy) always takes the passes: `solve` sums in another order than
        a network pass, so in float16 or bfloat16 its parameters differ from
        the density direction's by their rounding, which the layer's scales
        amplify (bfloat16, the 8-D MAF with perturbed weights of
        `tests/test_mixed_precision.py`: `z` came back off by 0.67); the last pass computes them exactly as the density
        direction does, so `inverse(forward(z))` returns `z`.
        """
        v, context = self.check_inputs(v, context)
        if (self.event_dim >= self.SOLVE_MIN_DIM and self.made.hidden_units
                and self.made.compute_dtype == v.dtype):
            def transform(params, v_d):
                return self.elementwise(params, v_d, inverse=False)
            return self.made.solve(transform, v, context=context)

        # the weights prepared once, outside the loop (see `MADE.prepared`)
        weights = self.made.prepared(params_first=True)

        def step(y):
            params = tf.cast(self.made.apply(weights, y, context=context, params_first=True),
                             y.dtype)
            return [self.elementwise(params, v, inverse=False)[0]]
        y, passes = tf.zeros_like(v), self.event_dim - 1
        if context is None and passes > 0:
            first = self._params(y[:1], None)
            shape = tf.concat([tf.shape(v)[:1], tf.shape(first)[1:]], 0)
            y = self.elementwise(tf.broadcast_to(first, shape), v, inverse=False)[0]
            passes -= 1
        if passes > 0:
            y, = tf.while_loop(lambda y: True, step, [y], maximum_iterations=passes)
        return self.elementwise(self._params(y, context), v, inverse=False)

    def forward_and_log_det(self, z, context=None, training=False):
        return self.sequential(z, context)

    def inverse_and_log_det(self, x, context=None, training=False):
        return self.one_pass(x, context)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_units=list(self.hidden_units), activation=self.activation)
        return config


@keras.saving.register_keras_serializable(package="kerasflows")
class MaskedAutoregressive(AutoregressiveLayer):
    """Masked autoregressive flow (MAF, Papamakarios et al. 2017).

    Each dimension is mapped with a shift `t_d(x_<d)` and a log-scale
    `s_d(x_<d)` that a MADE computes from the preceding data dimensions. By
    default (`affine_direction="inverse"`) the density direction is
    `z_d = x_d * exp(s_d) + t_d`, one MADE pass, and sampling
    `x_d = (z_d - t_d) * exp(-s_d)`, solved one dimension at a time, as
    zuko's and nflows' MAF; `"forward"` writes sampling that way instead,
    `x_d = z_d * exp(s_d) + t_d`, as the MAF paper and TFP's
    `MaskedAutoregressiveFlow` (`AffineCoupling` says why the default
    trains better). The log-scale is soft-clamped to
    `(-max_log_scale, max_log_scale)`. The MADE's last layer starts at
    zero, so a new layer is the identity.

    Example:

    ```python
    flow = kerasflows.Flow([MaskedAutoregressive(), Permute(), MaskedAutoregressive()],
                           event_dim=2)
    ```

    Args:
        hidden_units: sizes of the MADE's hidden layers.
        activation: a Keras activation name.
        context_dim: size of the context, or None.
        max_log_scale: bound of the soft clamp on the log-scale.
        affine_direction: `"inverse"` or `"forward"`: which direction is
            `v * exp(s) + t` (see above). Layers saved without this setting
            (kerasflows 0.1.0) load as `"forward"`, the map they were trained with.

    Raises:
        ValueError: for bad `hidden_units`, `context_dim`, `max_log_scale` or
            `affine_direction`.
    """

    params_per_dim = 2
    # Saved before `affine_direction` existed: the forward form.
    legacy_config = {"affine_direction": "forward"}

    def __init__(self, hidden_units=(64, 64), activation="relu", context_dim=None,
                 max_log_scale=3.0, affine_direction="inverse", **kwargs):
        super().__init__(hidden_units, activation, context_dim, **kwargs)
        self.max_log_scale = check_max_log_scale(max_log_scale)
        self.affine_direction = check_direction("affine_direction", affine_direction)

    def transform_kwargs(self, params_fn):
        def bijector_fn(y, **unused):
            p = params_fn(y)
            return directed_affine_bijector(p[..., 0], soft_clamp(p[..., 1], self.max_log_scale),
                                            self.affine_direction)
        return {"bijector_fn": bijector_fn}

    def elementwise(self, params, v, inverse):
        return directed_affine(params[:, 0], soft_clamp(params[:, 1], self.max_log_scale), v,
                               inverse, self.affine_direction)

    def get_config(self):
        return {**super().get_config(), "max_log_scale": self.max_log_scale,
                "affine_direction": self.affine_direction}


@keras.saving.register_keras_serializable(package="kerasflows")
class InverseAutoregressive(MaskedAutoregressive):
    """Inverse autoregressive flow (IAF, Kingma et al. 2016): the inverse of a MAF transform.

    Forward (sampling): one MADE pass on `z`, `x_d = z_d * exp(s_d(z_<d)) +
    t_d(z_<d)` with the default `affine_direction="inverse"` (Kingma et
    al.'s form; `"forward"`: `x_d = (z_d - t_d) * exp(-s_d)`); the inverse
    (density) is solved one dimension at a time.

    Args: as `MaskedAutoregressive`.
    """

    def bijector(self, context=None):
        return tfb.Invert(super().bijector(context))

    def forward_and_log_det(self, z, context=None, training=False):
        return self.one_pass(z, context)

    def inverse_and_log_det(self, x, context=None, training=False):
        return self.sequential(x, context)
