"""Sampling from a flow: the base noise (`philox_normal`) and `FlowSampling`, a
mixin of `kerasflows.Flow` (`sample`, `sample_and_log_prob`)."""

import contextlib
import math
import operator
import threading

import keras
import tensorflow as tf

from kerasflows.autograph_free import AutoGraphFree
from kerasflows.layers.base import check_positive_int, context_rows
from kerasflows.layers.checks import real_number

__all__ = ["FlowSampling", "philox_normal", "student_t_noise"]


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


def student_t_noise(eps, df, seed):
    """Student-t draws from standard-normal ones: `eps * sqrt(df / chi2)`, with the
    chi-squared variates of `df` degrees of freedom (twice `Gamma(df / 2)`) drawn
    by `tf.random.stateless_gamma` from `seed` folded with 1
    (`tf.random.experimental.stateless_fold_in`), so not from the numbers `eps`
    came from. `eps` is `[n, D]`, `df` `[D]`, `seed` two int32s.

    Traced inside a function compiled with XLA (a caller's `jit_compile=True`),
    where TensorFlow's stateless gamma has no kernel, the variates come from
    TFP's Gamma sampler instead (other numbers from the same seed; XLA's
    normal `eps` differ there too), with gradients to `df` as well."""
    gamma_seed = tf.random.experimental.stateless_fold_in(seed, 1)
    alpha = tf.cast(0.5 * df, eps.dtype)
    if _in_xla():
        import tensorflow_probability as tfp
        g = tfp.distributions.Gamma(alpha, tf.ones_like(alpha)).sample(
            tf.shape(eps)[0], seed=gamma_seed)
    else:
        g = tf.random.stateless_gamma(tf.shape(eps), gamma_seed, alpha=alpha, dtype=eps.dtype)
    return eps * tf.sqrt(alpha / g)


def _in_xla():
    """True while tracing a function that XLA compiles (or one called inside it)."""
    if tf.executing_eagerly():
        return False
    from tensorflow.python.ops import control_flow_util
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


#: Held while a flow's `sample_seed` is read and advanced eagerly (`_next_sample_seed`).
#: One lock for all flows: what it guards takes a few small ops, and a flow keeps
#: no lock of its own that saving, cloning or copying it would have to leave out.
_SAMPLE_SEED_LOCK = threading.Lock()


def _next_sample_seed(generator):
    """`generator.next()` (a `keras.random.SeedGenerator`) as int32, as XLA takes it
    (the generator's int64 state `[< 1e9, calls]` gives the same numbers in either
    dtype). `next()` reads the state and then writes it; called eagerly it holds
    `_SAMPLE_SEED_LOCK`, since two threads that both read before either wrote
    drew the same noise. Traced, the function's own ops read and write the
    variable in order, and a Python lock would guard only the tracing."""
    eager = tf.executing_eagerly()
    with _SAMPLE_SEED_LOCK if eager else contextlib.nullcontext():
        return tf.cast(generator.next(), "int32")


def _int32_seed(seed, generators=True):
    """`seed` as a Python int, if it is an integer TensorFlow's int32 seeds hold; the
    message names a `keras.random.SeedGenerator` too when the caller takes one
    (`generators`: `Flow.sample`'s seed, not `FlowImages`')."""
    try:
        value = operator.index(seed)
    except TypeError:
        also = " or a `keras.random.SeedGenerator`" if generators else ""
        raise ValueError(f"`seed` must be an integer{also}; received {seed!r} "
                         f"({type(seed).__name__}).") from None
    if isinstance(seed, bool) or not -2**31 <= value < 2**31:
        raise ValueError(f"`seed` must be an integer in [-2**31, 2**31 - 1]; received "
                         f"{seed!r}.")
    return value


def _seed_tensor(seed):
    """`seed` as an int32 scalar tensor: an integer in int32's range (`_int32_seed`), or
    a scalar int32 tensor whose value is known only at run time (a traced function's
    argument), as `n` may be."""
    if tf.is_tensor(seed):
        value = tf.get_static_value(seed)       # an eager tensor's, or a constant's
        if value is None:
            if seed.dtype != tf.int32 or seed.shape.rank != 0:
                raise ValueError("`seed` must be an integer, a `keras.random.SeedGenerator` "
                                 "or, in a traced function, a scalar int32 tensor; received "
                                 f"{seed!r}.")
            return seed
        seed = value.item() if value.ndim == 0 else value   # (an array: refused below)
    return tf.constant(_int32_seed(seed), "int32")


def _int32_count(value):
    """`value` as a Python int in [0, 2**31): TensorFlow's shapes here are int32, so a
    larger count would wrap (2**32 + 3 draws 3 rows) or fail inside TensorFlow."""
    n = check_positive_int("n", value, minimum=0)
    if n >= 2**31:
        raise ValueError("`n` must be an integer < 2**31 (sample shapes are int32). "
                         f"Received: n={n}")
    return n


def _sample_count(n):
    """`n` as a Python int in [0, 2**31) (0 gives an empty batch, as in TFP), or a
    scalar integer tensor whose value is known only at run time
    (`tf.shape(h)[0]` in a traced function) as int32."""
    if tf.is_tensor(n):
        value = tf.get_static_value(n)      # an eager tensor's, or a constant's
        if value is not None:
            return _int32_count(value)
        if n.dtype.is_integer and n.shape.rank == 0:
            return tf.cast(n, "int32")
        raise ValueError("`n` must be an integer >= 0 or a scalar integer tensor. "
                         f"Received: n={n!r}")
    if n is None:
        raise ValueError("`n` must be an integer >= 0. Received: n=None (in a traced "
                         "function, pass a batch size unknown at tracing as a tensor: "
                         "tf.shape(context)[0]; on a symbolic keras.Input, whose batch "
                         "size is None, sample in a layer's or a subclassed model's call, "
                         "where the batch is a tensor)")
    return _int32_count(n)


def _checked_temperature(temperature):
    """`temperature` as a float, if it is one finite real number > 0 (not a bool, a
    string or an array of several: `real_number`); else a ValueError naming it."""
    value = real_number(temperature)
    if not (math.isfinite(value) and value > 0):
        raise ValueError("`temperature` must be finite and > 0. Received: "
                         f"temperature={temperature!r}")
    return value


class FlowSampling(AutoGraphFree):
    """A mixin of `kerasflows.Flow`: samples drawn through the forward direction
    from the flow's base (`event_dim`, `base`, `sample_seed`, `_base_params`, `_base_df`,
    `base_log_prob`, `forward`, `forward_and_log_det`)."""

    def _base_sample(self, n, seed, temperature):
        shape = [n, self.event_dim] if isinstance(n, int) else tf.stack([n, self.event_dim])
        if seed is None or isinstance(seed, keras.random.SeedGenerator):
            seed = _next_sample_seed(self.sample_seed if seed is None else seed)
        else:
            seed = tf.stack([tf.cast(seed, "int32"), tf.constant(0, "int32")])
        # Philox, whatever TensorFlow's default generator ("auto_select") would pick.
        eps = philox_normal(shape, seed, self.compute_dtype)
        if self.base == "student_t":
            eps = student_t_noise(eps, self._base_df(), seed)
        if self.base != "learned_normal" and isinstance(temperature, (int, float)) \
                and temperature == 1:
            # 0 + 1 * 1 * eps is eps: two passes over the batch saved (10^4 x 64 draws:
            # 1.2 ms of a 15 ms RealNVP sample call)
            return eps
        loc, scale = self._base_params()
        # a Python number straight to the flow's dtype: tf.cast made it float32 first,
        # and a float64 flow sampled at 0.6000000238
        temperature = tf.convert_to_tensor(temperature, dtype_hint=self.compute_dtype)
        return loc + tf.cast(temperature, self.compute_dtype) * scale * eps

    def _sample_args(self, n, context, seed, temperature):
        n = _sample_count(n)
        context = self._prepare_context(context)
        if isinstance(n, int):
            context = context_rows(context, n, lambda have: (
                f"context has {have} rows; expected n={n} (one per sample) or 1 (shared "
                "by all samples)."))
        elif context is not None and context.shape[0] == 1:
            context = tf.repeat(context, n, axis=0)     # n rows known only at run time
        temperature = _checked_temperature(temperature)
        if seed is not None and not isinstance(seed, keras.random.SeedGenerator):
            seed = _seed_tensor(seed)
        return n, seed, temperature, context

    def sample_and_log_prob(self, n, context=None, seed=None, temperature=1.0, training=False):
        """Draws `n` samples and their `log_prob`, using only the forward direction.

        With `temperature != 1` the base is scaled by `temperature`; the
        returned log-density is still the flow's own `log p(x)`. With
        `training=True` the layers (and a context encoder) run as in a training
        step, op by op or in the caller's graph: a `ContinuousFlow`'s Hutchinson
        probe is then fresh at each call (`VariationalFlow` trains so). The samples
        are `sample`'s of the same seed, but for a `ContinuousFlow`'s: `sample` solves
        its map alone (`FlowLayer.transform`), and the two solves agree to the
        solver's tolerance.
        """
        n, seed, temperature, context = self._sample_args(n, context, seed, temperature)
        # The base noise is drawn outside any compiled function: XLA's stateless
        # generator gives other numbers than the CPU kernel for a runtime seed, and
        # the same seed must give the same samples in every eval_mode and in exports.
        z = self._base_sample(n, seed, temperature)
        if training:
            z, context = self._prepare(z, context)
            x, log_det = self._run_forward(z, context, training=True)[:2]
        else:
            x, log_det = self.forward_and_log_det(z, context)
        return x, self.base_log_prob(z) - log_det

    def sample(self, n, context=None, seed=None, temperature=1.0):
        """Draws `n` samples `[n, D]`; the same integer `seed` gives the same samples.
        A `keras.random.SeedGenerator` as `seed` is drawn from, and advanced, at each
        call, as `keras.random`'s functions do (without a seed, the flow's own
        generator, `sample_seed`, is).

        A conditional flow takes `context` `[n, C]` (one row per sample) or
        `[1, C]` (one context for all `n` samples). In a traced function (a
        Keras model's `call`), `n` may be a scalar integer tensor such as
        `tf.shape(context)[0]` (an `[n, C]` context is then taken as it is), and
        `seed` a scalar int32 tensor."""
        n, seed, temperature, context = self._sample_args(n, context, seed, temperature)
        return self.forward(self._base_sample(n, seed, temperature), context)
