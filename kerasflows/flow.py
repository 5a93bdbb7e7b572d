"""`Flow`: a stack of flow layers over a base distribution, as a `keras.Model`.

Change of variables: with `g` the stack's inverse (data to base),
`log p(x) = log p0(g(x)) + log|det dg/dx|`, the log-dets summed over layers.
As in TFP, `forward` maps base `z` to data `x` (sampling) and `inverse` maps
`x` to `z` (density, features).
"""

import math
import operator

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from kerasflows.flow_training import FlowTraining
from kerasflows.graph_calls import light_calls
from kerasflows.layers.base import (FlowLayer, RowsBijector, check_event_dim, check_positive_int,
                                    context_rows, split_mixed_policy)

tfb, tfd = tfp.bijectors, tfp.distributions

__all__ = ["Flow", "BASES", "EVAL_MODES", "philox_normal", "encoded_context_dim"]

BASES = ("normal", "learned_normal")
EVAL_MODES = ("graph", "xla", "eager")
#: Target rows per block when `eval_mode="xla"` evaluates a large batch block by block.
EVAL_BLOCK_ROWS = 8192


def philox_normal(shape, seed, dtype="float32"):
    """`tf.random.stateless_normal(shape, seed, dtype=dtype, alg="philox")`: the same numbers.

    The base noise of `Flow.sample`. It runs TensorFlow's one-op stateless
    normal (`tf.raw_ops.StatelessRandomNormal`), which derives Philox's key
    and counter from the seed inside its kernel, in the same way as the
    Python code of `tf.random.stateless_normal(alg="philox")` does with
    about a dozen small ops before its own kernel: called eagerly, those cost
    about 1.1 ms a call whatever the shape (10^5 x 2 draws: 2.7-4.0 -> 1.3 ms,
    10^4 x 64: 5.5-5.8 -> 3.9 ms; throwaway A/Bs, this 2-core CPU). A test checks
    that the numbers are equal, eagerly, in graphs and under XLA (where both
    give XLA's own Philox numbers, as before).

    Args:
        shape: the output shape (a list or an integer tensor).
        seed: two integers (a list or an integer tensor), as in `tf.random.stateless_normal`.
        dtype: a float dtype.
    """
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        seed = tf.cast(seed, tf.int32)
    return tf.raw_ops.StatelessRandomNormal(shape=tf.cast(shape, tf.int32), seed=seed,
                                            dtype=tf.as_dtype(dtype))


def _block_rows(n, target=None):
    """Rows per block for a batch of `n` rows: None below two blocks, else
    the most even split into blocks of at most `target` (default
    `EVAL_BLOCK_ROWS`) rows."""
    target = target or EVAL_BLOCK_ROWS
    if n is None or n < 2 * target:
        return None
    blocks = -(-n // target)
    return -(-n // blocks)


def _named(fn, key):
    """`fn` under a name that says what it computes (`Flow._eager_compiled`'s `key`):
    the name TensorFlow gives the traced function, so XLA's compile cache, keyed
    on it, tells the flow's functions apart by what they are."""
    name, mode, rows, _ = key
    def call(*args):
        return fn(*args)
    call.__name__ = f"flow_{name}_{mode}" + (f"_blocks{rows}" if rows else "")
    return call


def _in_blocks(fn, rows):
    """`fn` evaluated on `rows`-row blocks of its arguments, one after the
    other (an XLA while loop), with the results concatenated.

    Every argument (None skipped) and every result has the batch as its
    first axis, and each row's result depends only on that row, so the
    result equals `fn(*args)`; the last block is padded with zero rows, whose
    results are dropped.
    """
    def blocked(*args):
        n = tf.shape(args[0])[0]
        count = (n + rows - 1) // rows
        pad = count * rows - n

        def split(a):
            a = tf.pad(a, tf.concat([[[0, pad]], tf.zeros([a.shape.rank - 1, 2], tf.int32)], 0))
            return tf.reshape(a, tf.concat([[count, rows], tf.shape(a)[1:]], 0))

        present = [i for i, a in enumerate(args) if a is not None]

        def body(block):
            call = [None] * len(args)
            for i, b in zip(present, block):
                call[i] = b
            return fn(*call)

        specs = tuple(tf.TensorSpec([rows] + args[i].shape[1:], args[i].dtype) for i in present)
        structure = tf.function(lambda *b: body(b), autograph=False).get_concrete_function(
            *specs).structured_outputs
        signature = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), structure)
        out = tf.map_fn(body, tuple(split(args[i]) for i in present),
                        fn_output_signature=signature, parallel_iterations=1)
        return tf.nest.map_structure(
            lambda t: tf.reshape(t, tf.concat([[count * rows], tf.shape(t)[2:]], 0))[:n], out)
    return blocked


def _int32_seed(seed):
    """`seed` as a Python int, if it is an integer TensorFlow's int32 seeds hold."""
    try:
        value = operator.index(seed)
    except TypeError:
        raise ValueError(f"`seed` must be an integer; received {seed!r} "
                         f"({type(seed).__name__}).") from None
    if isinstance(seed, bool) or not -2**31 <= value < 2**31:
        raise ValueError(f"`seed` must be an integer in [-2**31, 2**31 - 1]; received "
                         f"{seed!r}.")
    return value


def _as_float(value, dtype, what):
    """`value` (an array, list or tensor of floats or integers) as a `dtype` tensor.

    Integer data and labels are common (pixel values, class labels) and are
    converted, in eager calls and inside traced steps alike; anything else
    (booleans, strings, objects) raises a ValueError naming its dtype."""
    if not (tf.is_tensor(value) or isinstance(value, tf.Variable)):
        array = np.asarray(value)
        if array.dtype.kind not in "fiu":
            raise ValueError(f"Flow {what} must be numbers (floats or integers); received "
                             f"an array of dtype {array.dtype}.")
        return tf.convert_to_tensor(array, dtype=dtype)
    tensor = tf.convert_to_tensor(value)
    if tensor.dtype == dtype:
        return tensor
    if not (tensor.dtype.is_floating or tensor.dtype.is_integer):
        raise ValueError(f"Flow {what} must be numbers (floats or integers); received a "
                         f"tensor of dtype {tensor.dtype.name}.")
    return tf.cast(tensor, dtype)


def _context_for(layer, context):
    """The context a layer takes: unconditional layers (context_dim=None) get None."""
    return None if layer.context_dim is None else context


def encoded_context_dim(encoder, context_dim):
    """Builds `encoder` for contexts `[batch, context_dim]`; returns the width of its output.

    Raises a ValueError unless `encoder` is a Keras layer mapping `[batch,
    context_dim]` to `[batch, E]`.
    """
    if not isinstance(encoder, keras.layers.Layer):
        raise ValueError(f"`context_encoder` must be a Keras layer or model mapping the "
                         f"context [batch, C] to features [batch, E]; received "
                         f"{type(encoder).__name__}: {encoder!r}")
    if context_dim is None:
        raise ValueError("A flow with a `context_encoder` is conditional: give context_dim, "
                         "the width of the context the encoder takes.")
    try:        # symbolically, so the encoder is built for any batch (as Model.summary shows)
        out = encoder(keras.KerasTensor((None, context_dim)))
        given = f"(None, {context_dim})"
    except Exception:       # a layer Keras cannot call symbolically: on one row of zeros
        out = encoder(tf.zeros([1, context_dim], keras.backend.floatx()))
        given = f"(1, {context_dim})"
    if len(out.shape) != 2 or out.shape[1] is None:
        raise ValueError(f"`context_encoder` must map a context of shape (batch, {context_dim}) "
                         f"to features of shape (batch, E); it maps {given} to "
                         f"{tuple(out.shape)}.")
    return int(out.shape[1])


@keras.saving.register_keras_serializable(package="kerasflows")
class Flow(FlowTraining, keras.Model):
    """A normalizing flow: `layers` stacked over a base distribution.

    Layer 0 is applied first in the forward (sampling) direction, so data
    pass through the layers in reverse order on their way to the base.
    Calling the model on `x` returns `log_prob(x)`; `compile()` and `fit(x)`
    train it by maximum likelihood (the loss is the mean negative
    log-likelihood in nats per example; no targets are needed).

    Example:

    ```python
    x = kerasflows.datasets.load("moons", n=10_000)
    flow = kerasflows.models.NSF(event_dim=2, num_layers=4)
    flow.compile(optimizer=keras.optimizers.Adam(1e-3))
    flow.fit(x, batch_size=512, epochs=20)
    samples = flow.sample(1000, seed=0)
    ```

    Args:
        layers: a list of `kerasflows.layers.FlowLayer`.
        event_dim: the dimension D of the data.
        base: `"normal"` (standard normal) or `"learned_normal"` (a diagonal
            Gaussian whose mean and log-scale are trained).
        context_dim: size of the context vector for a conditional flow.
        context_encoder: optional Keras layer or model (for example a
            `keras.Sequential` of `Dense` layers) that maps the context
            `[batch, context_dim]` to the features `[batch, E]` the layers
            are conditioned on (their `context_dim` is then E), as nflows'
            `embedding_net`. It is trained with the flow, saved with it and
            run inside every method, so `log_prob`, `sample`, `fit((x, c))`,
            exports and the visualizer all take the context as given.
            `flow.context_features` is E (`context_dim` without an encoder).
        **kwargs: passed to `keras.Model` (`name`, `dtype`).

    Mixed precision: under a mixed policy (`"mixed_float16"`,
    `"mixed_bfloat16"`, passed as `dtype` or set with
    `keras.config.set_dtype_policy`) a flow's own arithmetic (base
    density, transforms, log-dets) stays in float32 and only the layers'
    conditioner networks compute in the low-precision dtype (see
    `kerasflows.layers.FlowLayer`); `log_prob` returns float32. With
    float16 conditioners, `compile` wraps the optimizer in a
    `keras.optimizers.LossScaleOptimizer`, as Keras does for a
    `"mixed_float16"` model (`auto_scale_loss=False` turns it off).

    Call arguments:
        inputs: `x` of shape `[batch, D]`, or `(x, context)` when conditional.

    Returns:
        `log_prob(x)`, shape `[batch]`.

    Raises:
        ValueError: for an invalid layer list (an empty one leaves the base
            distribution alone), an unknown base,
            layers whose context size differs from the flow's (or from the
            width of `context_encoder`'s output), or a `context_encoder`
            without `context_dim` or that is not a Keras layer.
    """

    def __init__(self, layers, event_dim, base="normal", context_dim=None,
                 context_encoder=None, **kwargs):
        kwargs, _ = split_mixed_policy(kwargs)
        super().__init__(**kwargs)
        self.event_dim = check_positive_int("event_dim", event_dim)
        self.context_dim = check_positive_int("context_dim", context_dim, allow_none=True)
        if base not in BASES:
            raise ValueError(f"`base` must be one of {BASES}. Received: base={base!r}")
        self.base = base
        self.context_encoder = context_encoder
        layer_context_dim = self.context_dim
        if context_encoder is not None:
            layer_context_dim = encoded_context_dim(context_encoder, self.context_dim)
        layers = list(layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, FlowLayer):
                raise ValueError(f"Flow layers must be kerasflows.layers.FlowLayer instances; "
                                 f"layer {i} is {type(layer).__name__}: {layer!r}")
            if layer.context_dim is not None and layer.context_dim != layer_context_dim:
                where = (f"the flow has context_dim={self.context_dim}"
                         if context_encoder is None else
                         f"the flow's context_encoder maps its context_dim={self.context_dim} "
                         f"to {layer_context_dim} features")
                raise ValueError(f"Layer {i} ({layer.name}) has context_dim={layer.context_dim} "
                                 f"but {where}.")
        if self.context_dim is not None and all(l.context_dim is None for l in layers):
            raise ValueError(
                f"The flow has context_dim={self.context_dim} but none of its "
                f"{len(layers)} layers takes a context (each has context_dim=None), so the "
                "context would be ignored: give the conditional layers context_dim="
                f"{layer_context_dim}, or leave the flow's context_dim unset.")
        self.flow_layers = layers
        #: The width of the context the layers see: the encoder's output, or context_dim.
        self.context_features = layer_context_dim
        for layer in layers:
            layer.ensure_built(self.event_dim)
        if base == "learned_normal":
            self.base_loc = self.add_weight(shape=(self.event_dim,), initializer="zeros",
                                            name="base_loc")
            self.base_log_scale = self.add_weight(shape=(self.event_dim,), initializer="zeros",
                                                  name="base_log_scale")
        self.sample_seed = keras.random.SeedGenerator(name="sample_seed")
        self._compiled = {}
        self._eval_mode = "graph"
        self.built = True

    # -- base distribution ----------------------------------------------
    def _base_params(self):
        dtype = self.compute_dtype
        if self.base == "learned_normal":
            return (tf.cast(self.base_loc, dtype), tf.exp(tf.cast(self.base_log_scale, dtype)))
        return tf.zeros([self.event_dim], dtype), tf.ones([self.event_dim], dtype)

    def base_distribution(self):
        """The base distribution p0 as a TFP distribution over `[D]` events."""
        loc, scale = self._base_params()
        return tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)

    def base_log_prob(self, z):
        """`log p0(z)`, shape `[batch]`."""
        loc, scale = self._base_params()
        u = (z - loc) / scale
        return (-0.5 * tf.reduce_sum(u * u, -1) - tf.reduce_sum(tf.math.log(scale))
                - 0.5 * self.event_dim * math.log(2 * math.pi))

    # -- inputs ------------------------------------------------------------
    def _prepare(self, x, context=None, what="inputs"):
        if isinstance(x, tf.data.Dataset):
            raise ValueError(f"Flow {what} must be an array or tensor of shape (batch, "
                             f"{self.event_dim}); received a tf.data.Dataset (flow.predict("
                             "dataset) gives the log-densities of its batches).")
        x = _as_float(x, self.compute_dtype, what)
        check_event_dim("Flow", x, self.event_dim, what=what)
        context = self._prepare_context(context)
        context = context_rows(context, x.shape[0], lambda have: (
            f"Flow {what} have {x.shape[0]} rows (shape {tuple(x.shape)}) but the "
            f"context has {have} (shape {tuple(context.shape)}); give one context row "
            f"per row, or one row [1, {self.context_dim}] shared by all."))
        return x, context

    def _prepare_context(self, context):
        if self.context_dim is None:
            if context is not None:
                raise ValueError("This flow is not conditional (context_dim=None) "
                                 "but received a context.")
            return None
        if context is None:
            raise ValueError(f"This flow is conditional (context_dim={self.context_dim}): "
                             f"pass context= of shape (batch, {self.context_dim}).")
        context = _as_float(context, self.compute_dtype, "context")
        check_event_dim("Flow", context, self.context_dim, what="context")
        return context

    def _encode(self, context, training=False):
        """The context the layers see: `context_encoder(context)` as the flow's dtype."""
        if context is None or self.context_encoder is None:
            return context
        return tf.cast(self.context_encoder(context, training=training), self.compute_dtype)

    @property
    def eval_mode(self):
        """How eager calls of `log_prob`, `sample`, `forward`, ... run.

        `"graph"` (default): a cached `tf.function`, traced once for every
        batch size (the batch dimension left free) and run without the
        graph optimiser's passes that leave a CPU graph as they found it
        (`kerasflows.graph_calls`: a shorter first call); `"xla"`: the same,
        XLA-compiled (`jit_compile=True`; fastest for repeated calls of one
        shape, but every new input shape compiles again; batches of 16,384
        rows or more go through in blocks of about `EVAL_BLOCK_ROWS` rows
        when every layer allows it, which keeps each block's activations in
        cache and gives the same numbers); `"eager"`: op by
        op, no tracing (handy for debugging and one-off calls). Inside a
        `tf.function` or a train step the methods run as plain ops whatever
        the mode. Not saved with the model.
        """
        return self._eval_mode

    @eval_mode.setter
    def eval_mode(self, mode):
        if mode not in EVAL_MODES:
            raise ValueError(f"`eval_mode` must be one of {EVAL_MODES}. Received: {mode!r}")
        self._eval_mode = mode

    def _eager_compiled(self, name, fn, *args):
        """Runs `fn` through a cached `tf.function` when called eagerly (see `eval_mode`).

        `fn` maps rows to rows (each result row depends only on its input
        rows). In "xla" mode a batch of at least `2 * EVAL_BLOCK_ROWS` rows
        through layers that all allow it (`FlowLayer.eval_in_blocks`) runs
        block by block (`_in_blocks`): the same results, with each block's
        activations kept in cache (RealNVP on 2-D, 10^5 rows: 42 -> 29 ms).
        """
        if not tf.executing_eagerly() or self._eval_mode == "eager":
            return fn(*args)
        rows = None
        if (self._eval_mode == "xla" and self.context_encoder is None
                and all(l.eval_in_blocks for l in self.flow_layers)):
            rows = _block_rows(args[0].shape[0])
        key = (name, self._eval_mode, rows, tuple(a is None for a in args))
        if key not in self._compiled:
            compiled = tf.function(
                _named(fn if rows is None else _in_blocks(fn, rows), key),
                jit_compile=self._eval_mode == "xla", reduce_retracing=True, autograph=False)
            # One trace for every batch size: a graph needs no static batch, and
            # tracing a flow takes seconds (first shape, then again relaxed at the
            # second: the visualizer's moons heatmap waited 2.4 s for that). XLA
            # still compiles each batch size it meets, from this one graph.
            compiled.get_concrete_function(*[
                None if a is None else tf.TensorSpec([None, *a.shape[1:]], a.dtype)
                for a in args])
            self._compiled[key] = compiled
        if self._eval_mode == "xla":
            return self._compiled[key](*args)
        with light_calls():      # a graph: Grappler's CPU-inert passes skipped
            return self._compiled[key](*args)

    # -- the two directions --------------------------------------------------
    def _unencodable(self, h, total, states, log_dets, encoded):
        """NaN for the rows whose context, as the layers see it, is not finite (a
        NaN or inf context; `ClassEmbedding`'s NaN features for an unknown label).
        Left to the conditioners, the NaN came out as NaN eagerly and under XLA
        but as finite numbers from TensorFlow graphs, whose fused
        matmul-bias-ReLU kernels turn NaN into 0."""
        if encoded is None:
            return h, total, (states, log_dets)
        bad = tf.reduce_any(tf.logical_not(tf.math.is_finite(encoded)), axis=-1)

        def nan_where_bad(t):
            return tf.where(bad if t.shape.rank == 1 else bad[:, None],
                            tf.constant(float("nan"), t.dtype), t)
        states = states[:1] + [nan_where_bad(t) for t in states[1:]]
        return (nan_where_bad(h), nan_where_bad(total),
                (states, [nan_where_bad(t) for t in log_dets]))

    def _run_inverse(self, x, context, training=False, keep=False):
        context = self._encode(context, training=training)
        h, total, states, log_dets = x, tf.zeros(tf.shape(x)[:1], x.dtype), [x], []
        for layer in reversed(self.flow_layers):
            h, ld = layer.inverse_and_log_det(h, context=_context_for(layer, context),
                                              training=training)
            total += ld
            if keep:
                states.append(h)
                log_dets.append(ld)
        return self._unencodable(h, total, states, log_dets, context)

    def _run_forward(self, z, context, keep=False):
        context = self._encode(context)
        h, total, states, log_dets = z, tf.zeros(tf.shape(z)[:1], z.dtype), [z], []
        for layer in self.flow_layers:
            h, ld = layer.forward_and_log_det(h, context=_context_for(layer, context))
            total += ld
            if keep:
                states.append(h)
                log_dets.append(ld)
        return self._unencodable(h, total, states, log_dets, context)

    def forward_and_log_det(self, z, context=None):
        """Base to data: returns `(x, log|det dx/dz|)`."""
        z, context = self._prepare(z, context)
        fn = lambda z, c=None: self._run_forward(z, c)[:2]
        return self._eager_compiled("forward", fn, z, context)

    def inverse_and_log_det(self, x, context=None):
        """Data to base: returns `(z, log|det dz/dx|)`."""
        self._check_invertible()
        x, context = self._prepare(x, context)
        fn = lambda x, c=None: self._run_inverse(x, c)[:2]
        return self._eager_compiled("inverse", fn, x, context)

    def forward(self, z, context=None):
        """Maps base samples `z` to data space."""
        # compiled on its own: XLA drops the log-det work nobody reads
        z, context = self._prepare(z, context)
        fn = lambda z, c=None: self._run_forward(z, c)[0]
        return self._eager_compiled("forward_only", fn, z, context)

    def inverse(self, x, context=None):
        """Maps data `x` to the base space (the flow's features of `x`)."""
        self._check_invertible()
        x, context = self._prepare(x, context)
        fn = lambda x, c=None: self._run_inverse(x, c)[0]
        return self._eager_compiled("inverse_only", fn, x, context)

    def trace(self, z, context=None, return_log_dets=False):
        """Forward trace: `[z, after layer 0, ..., after layer L-1]` (L+1 tensors).

        With `return_log_dets=True` returns `(states, log_dets)`, where
        `log_dets[i]` (`[batch]`) is layer i's forward log|det J|.
        """
        z, context = self._prepare(z, context)
        fn = lambda z, c=None: self._run_forward(z, c, keep=True)[2]
        states, log_dets = self._eager_compiled("trace", fn, z, context)
        return (list(states), list(log_dets)) if return_log_dets else list(states)

    def trace_inverse(self, x, context=None, return_log_dets=False):
        """Inverse trace: `[x, after undoing layer L-1, ..., z]` (L+1 tensors).

        With `return_log_dets=True` returns `(states, log_dets)`, where
        `log_dets[i]` is the inverse log|det J| of the i-th step taken (layer
        L-1-i), so `log p(x) = log p0(states[-1]) + sum(log_dets)`.
        """
        self._check_invertible()
        x, context = self._prepare(x, context)
        fn = lambda x, c=None: self._run_inverse(x, c, keep=True)[2]
        states, log_dets = self._eager_compiled("trace_inverse", fn, x, context)
        return (list(states), list(log_dets)) if return_log_dets else list(states)

    # -- densities and samples ----------------------------------------------
    def _log_prob(self, x, context=None, training=False):
        self._check_invertible()
        z, ld, _ = self._run_inverse(x, context, training=training)
        return self.base_log_prob(z) + ld

    def log_prob(self, x, context=None):
        """`log p(x)` in nats, shape `[batch]`."""
        self._check_invertible()
        x, context = self._prepare(x, context)
        return self._eager_compiled("log_prob", self._log_prob, x, context)

    def _base_sample(self, n, seed, temperature):
        shape = [n, self.event_dim] if isinstance(n, int) else tf.stack([n, self.event_dim])
        if seed is None:
            # int32, as XLA takes it (the generator's int64 state [< 1e9, calls]
            # gives the same numbers in either dtype)
            seed = tf.cast(self.sample_seed.next(), "int32")
        else:
            seed = tf.stack([tf.cast(seed, "int32"), tf.constant(0, "int32")])
        # Philox, whatever TensorFlow's default generator ("auto_select") would pick.
        eps = philox_normal(shape, seed, self.compute_dtype)
        if self.base == "normal" and isinstance(temperature, (int, float)) and temperature == 1:
            # 0 + 1 * 1 * eps is eps: two passes over the batch saved (10^4 x 64 draws:
            # 1.2 ms of a 15 ms RealNVP sample call)
            return eps
        loc, scale = self._base_params()
        return loc + tf.cast(temperature, self.compute_dtype) * scale * eps

    def _sample_args(self, n, context, seed, temperature):
        n = check_positive_int("n", n, minimum=0)     # 0 gives an empty batch, as in TFP
        context = context_rows(self._prepare_context(context), n, lambda have: (
            f"context has {have} rows; expected n={n} (one per sample) or 1 (shared by "
            "all samples)."))
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError("`temperature` must be finite and > 0. Received: "
                             f"temperature={temperature}")
        seed = None if seed is None else tf.constant(_int32_seed(seed), "int32")
        return n, seed, temperature, context

    def sample_and_log_prob(self, n, context=None, seed=None, temperature=1.0):
        """Draws `n` samples and their `log_prob`, using only the forward direction.

        With `temperature != 1` the base is scaled by `temperature`; the
        returned log-density is still the flow's own `log p(x)`.
        """
        n, seed, temperature, context = self._sample_args(n, context, seed, temperature)
        # The base noise is drawn outside any compiled function: XLA's stateless
        # generator gives other numbers than the CPU kernel for a runtime seed, and
        # the same seed must give the same samples in every eval_mode and in exports.
        z = self._base_sample(n, seed, temperature)
        x, log_det = self.forward_and_log_det(z, context)
        return x, self.base_log_prob(z) - log_det

    def sample(self, n, context=None, seed=None, temperature=1.0):
        """Draws `n` samples `[n, D]`; the same integer `seed` gives the same samples.

        A conditional flow takes `context` `[n, C]` (one row per sample) or
        `[1, C]` (one context for all `n` samples)."""
        n, seed, temperature, context = self._sample_args(n, context, seed, temperature)
        return self.forward(self._base_sample(n, seed, temperature), context)

    def _check_invertible(self):
        for layer in self.flow_layers:
            if layer.forward_only:
                raise layer.no_inverse_error()

    # -- TFP views -------------------------------------------------------------
    def get_bijector(self, context=None):
        """The whole stack as one TFP bijector (forward: base to data), on inputs of
        any batch shape `[..., D]` (its `inner` is the `tfb.Chain` of the layers'
        bijectors, which take `[N, D]` rows). A conditional flow's `context` is
        one row per input row, or `[1, C]`."""
        if self.context_dim is not None and context is None:
            raise ValueError(f"This flow is conditional (context_dim={self.context_dim}): "
                             "use get_bijector(context=...).")
        if context is not None:
            context = self._encode(self._prepare_context(context))
        bijectors = [layer.bijector(context=_context_for(layer, context))
                     for layer in self.flow_layers]
        forward_only = [layer for layer in self.flow_layers if layer.forward_only]
        return RowsBijector(tfb.Chain(list(reversed(bijectors))), self.event_dim,
                             forward_only[0].no_inverse_error() if forward_only else None)

    def get_distribution(self, context=None):
        """The flow as a TFP `TransformedDistribution` over `[D]` events."""
        if self.context_dim is not None and context is None:
            raise ValueError(f"This flow is conditional (context_dim={self.context_dim}): "
                             "use get_distribution(context=...).")
        return tfd.TransformedDistribution(self.base_distribution(),
                                           self.get_bijector(context))

    @property
    def bijector(self):
        """One TFP bijector for the whole stack (`get_bijector(context)` if conditional)."""
        return self.get_bijector()

    @property
    def distribution(self):
        """The flow as a TFP distribution (`get_distribution(context)` if conditional)."""
        return self.get_distribution()

    # -- Keras ------------------------------------------------------------------
    def _split_inputs(self, inputs, context=None):
        if isinstance(inputs, (tuple, list)) and context is None:
            if len(inputs) != 2:
                raise ValueError("A conditional flow takes inputs as (x, context); "
                                 f"received a sequence of {len(inputs)} items.")
            return inputs[0], inputs[1]
        return inputs, context

    def call(self, inputs, context=None, training=False):
        x, context = self._prepare(*self._split_inputs(inputs, context))
        return self._log_prob(x, context, training=training)

    @property
    def needs_data_init(self):
        """True if a layer (e.g. `ActNorm`) initialises from the first batch of data."""
        return any(l.needs_data_init for l in self.flow_layers)

    def initialize(self, x, context=None):
        """Runs data-dependent initialisation (e.g. `ActNorm`) on a batch `x`."""
        x, context = self._prepare(x, context)
        if x.shape[0] == 0:
            raise ValueError(f"Flow.initialize needs at least one row; received shape "
                             f"{tuple(x.shape)}.")
        context = self._encode(context)
        h = x
        for layer in reversed(self.flow_layers):
            c = _context_for(layer, context)
            layer.data_init(h, context=c)
            h, _ = layer.inverse_and_log_det(h, context=c)

    def export(self, path, version=1, overwrite=False, format="tf_saved_model", verbose=None):
        """Writes a TF Serving SavedModel to `path/<version>/`; see `kerasflows.export`.

        `format` and `verbose` are accepted as `keras.Model.export` takes them;
        the one format is `"tf_saved_model"` (with every signature of
        `kerasflows.export`, not only Keras' `serve`). Returns the directory written.
        """
        from kerasflows.export import SIGNATURES, export_saved_model
        if format != "tf_saved_model":
            raise ValueError(f"Flow.export writes a TF Serving SavedModel "
                             f"(format='tf_saved_model'); received format={format!r}.")
        target = export_saved_model(self, path, version=version, overwrite=overwrite)
        if verbose:
            print(f"Saved a SavedModel with signatures {', '.join(SIGNATURES)} "
                  f"to {target}")
        return target

    def get_config(self):
        config = super().get_config()
        config.update(
            layers=[keras.saving.serialize_keras_object(l) for l in self.flow_layers],
            event_dim=self.event_dim, base=self.base, context_dim=self.context_dim)
        if self.context_encoder is not None:
            config["context_encoder"] = keras.saving.serialize_keras_object(self.context_encoder)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layers = [keras.saving.deserialize_keras_object(l, custom_objects=custom_objects)
                  for l in config.pop("layers")]
        if config.get("context_encoder") is not None:
            config["context_encoder"] = keras.saving.deserialize_keras_object(
                config["context_encoder"], custom_objects=custom_objects)
        return cls(layers=layers, **config)
