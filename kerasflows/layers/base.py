"""`FlowLayer`: the base class of every kerasflows layer.

A flow layer is a `keras.layers.Layer` that owns its weights and, through
`bijector(context=None)`, returns a fresh TensorFlow Probability bijector
built from those weights on every call (the lazy-bijector pattern). As in
TFP, the bijector's `forward` maps base samples `z` to data `x`; `inverse`
maps data back to the base space. The layers' argument checks
(`kerasflows.layers.checks`) and batch-shape helpers
(`kerasflows.layers.rows`) are importable from here too.
"""

import functools
import inspect
import math

import keras
import tensorflow as tf

from kerasflows.autograph_free import AutoGraphFree
from kerasflows.layers.checks import (check_bool, check_event_dim, check_float,
                                      check_float_compute, check_positive_int, context_rows,
                                      float_policy, split_mixed_policy)
from kerasflows.layers.rows import RowsBijector, any_batch, batch_log_det, solve_nonempty

__all__ = ["FlowLayer", "NoInverseError", "check_positive_int", "check_float", "check_bool",
           "check_event_dim", "context_rows", "split_mixed_policy", "batch_log_det",
           "solve_nonempty", "any_batch", "RowsBijector"]


class NoInverseError(NotImplementedError, ValueError):
    """The inverse direction of a forward-only layer (`Planar`, `Radial`) was asked
    for: `inverse`, `log_prob` of data, an export. A `NotImplementedError`, and a
    `ValueError` too, as what is wrong is the request, not the input's values."""


def _built_first(bijector):
    """`bijector` (a layer class's own method) saying that the layer is not built when
    it fails for want of its weights (an unbuilt `Permute().bijector()` raised
    "AttributeError: 'Permute' object has no attribute 'permutation'")."""
    @functools.wraps(bijector)      # (the AutoGraph mark, `AutoGraphFree`, with it)
    def checked(self, *args, **kwargs):
        try:
            return bijector(self, *args, **kwargs)
        except AttributeError as e:
            if self.built:
                raise
            raise ValueError(
                f"{type(self).__name__} '{self.name}' is not built, so it has no weights "
                "for its bijector yet: call layer.ensure_built(event_dim) first, or use it "
                "in a Flow, which builds its layers.") from e
    checked._built_first = True
    return checked


class FlowLayer(keras.layers.Layer, AutoGraphFree):
    """Base class of flow layers: an invertible map with a tractable log-det.

    Subclasses create their weights in `build_flow(event_dim)` and return a
    TFP bijector from `bijector(context=None)`, built afresh from the
    layer's weights on every call. Everything else (`forward_and_log_det`,
    `inverse_and_log_det`, input checks, serialization of `context_dim`)
    comes from this class, and `kerasflows.Flow` stacks any subclass.

    Example:

    ```python
    @keras.saving.register_keras_serializable(package="my_flows")
    class Shift(kerasflows.layers.FlowLayer):
        def build_flow(self, event_dim):
            self.shift = self.add_weight(shape=(event_dim,), initializer="zeros")

        def bijector(self, context=None):
            return tfp.bijectors.Shift(self.shift)
    ```

    Mixed precision: under a mixed policy (`dtype="mixed_float16"` or
    `"mixed_bfloat16"`, or the same set globally with
    `keras.config.set_dtype_policy`) the layer itself computes in the
    policy's variable dtype (float32: its transform and log-det), and only
    its conditioner network (`conditioner_dtype_policy`) computes in the
    low-precision dtype; the conditioner's outputs are cast to float32
    before they parameterise the transform.

    Args:
        context_dim: size of the context vector the layer is conditioned
            on, or None for an unconditional layer.
        conditioner_dtype: dtype policy of the layer's conditioner network,
            for layers that have one (e.g. `"mixed_bfloat16"`). Default:
            the mixed policy the layer was made under (see above), else the
            layer's own policy. A policy that does not compute and keep its
            weights in float dtypes (`"int32"`) raises a ValueError.
        **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Call arguments:
        z: a `[batch, event_dim]` tensor in the base space.
        context: a `[batch, context_dim]` tensor for conditional layers.

    Returns:
        `forward(z)`: the transformed batch, same shape as `z`.
    """

    #: True for layers (e.g. planar, radial) that have no usable inverse.
    forward_only = False
    #: True for layers whose parameters are set from data before training
    #: (`data_init`, which `Flow.initialize` and `fit` call); such a layer may
    #: answer `is_data_initialized` so that `make_train_step` refuses it before.
    needs_data_init = False
    #: The open interval `(low, high)` each coordinate of the layer's data side
    #: (its forward's outputs, its inverse's inputs) lies in. At a flow's data
    #: end, `fit` and `evaluate` refuse data outside it (the inverse is not
    #: finite there, and one such value makes every weight NaN in training).
    #: Default: all reals, no check.
    data_domain = (-math.inf, math.inf)
    #: Smallest event dimension the layer supports.
    min_event_dim = 1
    #: True if each output row depends only on its input row (and context row),
    #: so a compiled evaluation may split a large batch into blocks
    #: (`Flow.eval_mode`). Off by default: a subclass opts in.
    eval_in_blocks = False
    #: Settings added after a release, with the values that reproduce a layer
    #: saved without them (`from_config` fills in the missing ones).
    legacy_config = {}

    def __init__(self, context_dim=None, conditioner_dtype=None, **kwargs):
        if kwargs.get("activity_regularizer") is not None:
            # Keras applies it in the layer's __call__, which a Flow never makes: it
            # calls the layers' transforms (`forward_and_log_det`, `bijector`)
            raise ValueError(
                f"{type(self).__name__} takes no activity_regularizer (a Flow calls its "
                "layers' transforms, not the layers, so it would never apply); received "
                f"activity_regularizer={kwargs['activity_regularizer']!r}.")
        kwargs, mixed = split_mixed_policy(kwargs)
        super().__init__(**kwargs)
        # as a Flow refuses it (the spline layers and BatchNorm raised NumPy's "data type
        # <class 'numpy.int32'> not inexact" on their dtype's limits)
        check_float_compute(f"{type(self).__name__}: a flow layer computes", self.compute_dtype)
        self.context_dim = check_positive_int("context_dim", context_dim, allow_none=True)
        if conditioner_dtype is None:
            conditioner_dtype = mixed
        self.conditioner_dtype_policy = (
            self.dtype_policy if conditioner_dtype is None
            else float_policy("conditioner_dtype", conditioner_dtype))
        self.event_dim = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("bijector")
        if inspect.isfunction(own) and not getattr(own, "_built_first", False):
            cls.bijector = _built_first(own)

    # -- building ---------------------------------------------------------
    def build(self, input_shape):
        event_dim = input_shape[-1]
        if event_dim is None:
            raise ValueError(f"{self.name}: the event dimension must be known; received "
                             f"input_shape={input_shape}.")
        event_dim = int(event_dim)
        if event_dim < self.min_event_dim:
            raise ValueError(
                f"{type(self).__name__} needs event_dim >= {self.min_event_dim}; "
                f"received event_dim={event_dim}.")
        self.event_dim = event_dim
        self.build_flow(event_dim)
        self.built = True
        if not self.trainable:
            # a frozen layer's sublayers and weights, made here after `trainable=False`
            # came from the config of a saved flow, freeze too (Keras does not pass it
            # down; a loaded flow trained its frozen layer and dropped the optimizer
            # state). The setter itself: an assignment of the value the attribute
            # already holds does not reach it.
            keras.layers.Layer.trainable.fset(self, False)

    def build_flow(self, event_dim):
        """Creates the layer's weights for `event_dim`-dimensional events."""

    def eval_block_rows(self, target):
        """Rows per block this layer asks for when an eager call of the flow
        (`Flow.eval_mode`) splits a large batch into blocks: `target`
        (`kerasflows.eval_calls.EVAL_BLOCK_ROWS`) if the layer allows blocks
        (`eval_in_blocks`), else None, and the batch runs whole. A layer whose
        rows take much memory asks for fewer (the spline layers on wide
        data); the "graph" mode uses blocks only if some layer does."""
        return target if self.eval_in_blocks else None

    def ensure_built(self, event_dim):
        """Builds the layer for `event_dim` if needed, else checks it matches."""
        if not self.built:
            self.build((None, event_dim))
        elif self.event_dim != event_dim:
            raise ValueError(f"{self.name} was built for event_dim={self.event_dim}; "
                             f"received event_dim={event_dim}.")

    # -- the transform ----------------------------------------------------
    def bijector(self, context=None):
        """Returns a fresh TFP bijector (forward: base to data) from the weights.

        The layers' own take inputs of any batch shape `[..., D]`, as TFP's
        distributions give them; a bijector written for rows `[N, D]` gets
        that from `RowsBijector(bijector, event_dim)`, or its conditioner from
        `any_batch(fn)`."""
        raise NotImplementedError(f"{type(self).__name__} must implement bijector(context=None).")

    def check_bijector_context(self, context):
        """Raises ValueError if this conditional layer's `bijector()` got no context, or
        one not of shape `(batch, context_dim)` (a `[C]` context was read as C rows)."""
        if self.context_dim is not None and context is None:
            raise ValueError(f"{type(self).__name__} '{self.name}' is conditional "
                             f"(context_dim={self.context_dim}): its bijector needs "
                             f"`context=` of shape (batch, {self.context_dim}).")
        if context is not None:
            shaped = context if hasattr(context, "shape") else tf.convert_to_tensor(context)
            check_event_dim(f"{type(self).__name__} '{self.name}'", shaped, self.context_dim,
                            what="context")

    def check_bijector_dtype(self, x):
        """Refuses a tensor `x` of another dtype than the layer computes in, reaching its
        conditioner: the conditioners' outputs were cast to the input's dtype, so a
        float64 layer's bijector computed a float32 tensor in float32 (and a float32
        layer's a float16 one in float16)."""
        if x.dtype != self.compute_dtype:
            raise TypeError(
                f"{type(self).__name__} '{self.name}' computes in {self.compute_dtype}; its "
                f"bijector received a {x.dtype.name} tensor. Cast it first "
                f"(tf.cast(x, {self.compute_dtype!r})): a TFP bijector takes its own dtype.")

    def of_layer_dtype(self, bijector):
        """`bijector` (a TFP `RealNVP` or `MaskedAutoregressiveFlow`, which take no dtype)
        given the layer's compute dtype as TFP's own bijectors hold theirs: NumPy arrays
        and lists are converted to it (a float64 array to a float32 layer's), and a
        tensor of another dtype is refused by TFP (`check_bijector_dtype` behind it)."""
        bijector._dtype = tf.as_dtype(self.compute_dtype)
        return bijector

    def check_inputs(self, x, context=None):
        """Validates shapes of `x` and `context`; returns them as tensors."""
        # A fresh tensor, so TFP's bijector cache (keyed on inputs, shared by
        # equal bijectors) never returns a stale result without a gradient
        # path (tensorflow/probability#1190).
        x = tf.identity(tf.convert_to_tensor(x, dtype=self.compute_dtype))
        if not self.built:
            self.build(x.shape)
        check_event_dim(type(self).__name__, x, self.event_dim)
        if self.context_dim is None:
            if context is not None:
                raise ValueError(f"{type(self).__name__} '{self.name}' is not conditional "
                                 "(context_dim=None) but received a context.")
            return x, None
        if context is None:
            raise ValueError(f"{type(self).__name__} '{self.name}' is conditional "
                             f"(context_dim={self.context_dim}) and needs `context=` "
                             f"of shape (batch, {self.context_dim}).")
        context = tf.convert_to_tensor(context, dtype=self.compute_dtype)
        check_event_dim(type(self).__name__, context, self.context_dim, what="context")
        context = context_rows(context, x.shape[0], lambda have: (
            f"{type(self).__name__} '{self.name}' inputs have {x.shape[0]} rows but the "
            f"context has {have}; give one context row per row, or one row "
            f"[1, {self.context_dim}] shared by all."))
        return x, context

    def forward_and_log_det(self, z, context=None, training=False):
        """Maps base `z` to data `x`; returns `(x, log|det dx/dz|)`, log-det `[batch]`."""
        z, context = self.check_inputs(z, context)
        b = self.bijector(context=context)
        return b.forward(z), batch_log_det(b.forward_log_det_jacobian(z, event_ndims=1), z)

    def inverse_and_log_det(self, x, context=None, training=False):
        """Maps data `x` to base `z`; returns `(z, log|det dz/dx|)`, log-det `[batch]`."""
        if self.forward_only:
            raise self.no_inverse_error()
        x, context = self.check_inputs(x, context)
        b = self.bijector(context=context)
        return b.inverse(x), batch_log_det(b.inverse_log_det_jacobian(x, event_ndims=1), x)

    def transform(self, v, context=None, forward=True):
        """The map alone: `forward_and_log_det(v)[0]`, or with `forward=False`
        `inverse_and_log_det(v)[0]`. `Flow.forward` and `Flow.inverse` call it; a
        layer whose log-det costs more than its map (`ContinuousFlow`) solves
        without it."""
        run = self.forward_and_log_det if forward else self.inverse_and_log_det
        return run(v, context=context)[0]

    def no_inverse_error(self):
        return NoInverseError(
            f"{type(self).__name__} '{self.name}' is forward-only: it has no inverse, so "
            "inverse and log_prob of arbitrary data are unavailable. Use "
            "Flow.sample_and_log_prob, which needs only the forward direction.")

    def data_init(self, x, context=None):
        """Sets data-dependent parameters from a data batch `x` (identity by default)."""

    def is_data_initialized(self):
        """Whether `data_init` has set the layer's data-dependent parameters, for
        `make_train_step` to refuse a flow whose layers have not. Default True:
        a layer that does not track it is taken as ready (`ActNorm` answers from
        its `initialized` weight)."""
        return True

    def static_weights(self):
        """The layer's non-trainable weights that a training call never writes (say,
        a fixed permutation, or a flag only `data_init` sets). A train step may
        read them from several threads at once (`make_train_step(..., shards=2)`,
        `background_compile=True`); any other non-trainable weight counts as
        state the training call updates (as `BatchNorm`'s moving statistics).
        Default: none."""
        return []

    def call(self, z, context=None):
        return self.forward_and_log_det(z, context=context)[0]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"context_dim": self.context_dim})
        if self.conditioner_dtype_policy.name != self.dtype_policy.name:
            config["conditioner_dtype"] = self.conditioner_dtype_policy.name
        return config

    @classmethod
    def from_config(cls, config):
        return super().from_config({**cls.legacy_config, **config})
