"""A flow's base distribution p0: `FlowBase`, a mixin of `kerasflows.Flow`.

`"normal"` is the standard normal; `"learned_normal"` a diagonal Gaussian
whose mean and log-scale are trained (`base_loc`, `base_log_scale`);
`"student_t"` independent standard Student-t coordinates, each with its own
degrees of freedom, trained as their log (`base_log_df`, from
`STUDENT_T_INITIAL_DF`). Its samples are drawn in `kerasflows.flow_sampling`.
"""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from kerasflows.autograph_free import AutoGraphFree

tfd = tfp.distributions

__all__ = ["FlowBase", "BASES", "STUDENT_T_INITIAL_DF"]

BASES = ("normal", "learned_normal", "student_t")
#: The degrees of freedom a `"student_t"` base starts at, in every dimension.
STUDENT_T_INITIAL_DF = 10.0


def _log1p_square_ratio(abs_z, log_df):
    """`log(1 + z^2 / df)` from `|z|` and `log df`, finite for every finite `z`
    and `df`: with `a = |z| / sqrt(df)`, `log1p(a^2)` up to 1 and `2 log a +
    log(1 + 1 / a^2)` above (`a^2` overflows float32 from about 1.8e19), `log a`
    taken as `log|z| - log(df) / 2` (`a` itself overflowed for df < 1 at |z| near
    float32's largest value, and log p0 was -inf, its gradients NaN). Each
    branch sees only its own side of 1, so neither sends NaN into the other's
    gradient."""
    root_df = tf.exp(0.5 * log_df)
    small = tf.minimum(abs_z, root_df) / root_df
    log_big = tf.math.log(tf.maximum(abs_z, root_df)) - 0.5 * log_df
    return tf.where(abs_z > root_df,
                    2.0 * log_big + tf.math.log1p(tf.exp(-2.0 * log_big)),
                    tf.math.log1p(small * small))


class FlowBase(AutoGraphFree):
    """A mixin of `kerasflows.Flow` (`base`, `event_dim`, `compute_dtype`,
    `add_weight`): the base's weights (`_add_base_weights`), its parameters and
    its density."""

    def _add_base_weights(self):
        if self.base == "learned_normal":
            self.base_loc = self.add_weight(shape=(self.event_dim,), initializer="zeros",
                                            name="base_loc")
            self.base_log_scale = self.add_weight(shape=(self.event_dim,), initializer="zeros",
                                                  name="base_log_scale")
        if self.base == "student_t":
            self.base_log_df = self.add_weight(
                shape=(self.event_dim,), name="base_log_df",
                initializer=keras.initializers.Constant(math.log(STUDENT_T_INITIAL_DF)))

    def _base_params(self):
        dtype = self.compute_dtype
        if self.base == "learned_normal":
            return (tf.cast(self.base_loc, dtype), tf.exp(tf.cast(self.base_log_scale, dtype)))
        return tf.zeros([self.event_dim], dtype), tf.ones([self.event_dim], dtype)

    def _base_df(self):
        return tf.exp(tf.cast(self.base_log_df, self.compute_dtype))

    @property
    def base_df(self):
        """The degrees of freedom of a `"student_t"` base, `[D]` (a NumPy array), or
        None for a Gaussian base."""
        return None if self.base != "student_t" else self._base_df().numpy()

    def base_distribution(self):
        """The base distribution p0 as a TFP distribution over `[D]` events. Its
        learned parameters (a `"learned_normal"`'s mean and scale, a
        `"student_t"`'s degrees of freedom) read the weights when it is used
        (`tfp.util.DeferredTensor`): one held across training follows them, and
        they are its `trainable_variables`."""
        dtype = self.compute_dtype

        def deferred(weight, fn):
            # the tf.Variable, listed as trainable, only for a weight that is: a frozen
            # one's is trainable itself, and TFP's optimisers would train it
            return tfp.util.DeferredTensor(weight.value if weight.trainable else weight,
                                           lambda v: fn(tf.cast(v, dtype)), dtype=dtype)

        if self.base == "learned_normal":
            loc = deferred(self.base_loc, tf.identity)
            scale = deferred(self.base_log_scale, tf.exp)
        else:
            loc, scale = tf.zeros([self.event_dim], dtype), tf.ones([self.event_dim], dtype)
        if self.base == "student_t":
            return tfd.Independent(
                tfd.StudentT(df=deferred(self.base_log_df, tf.exp), loc=loc, scale=scale),
                reinterpreted_batch_ndims=1)
        return tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)

    def base_log_prob(self, z):
        """`log p0(z)`, shape `[batch]`."""
        if self.base == "student_t":
            log_df = tf.cast(self.base_log_df, self.compute_dtype)
            df = tf.exp(log_df)
            half = 0.5 * (df + 1.0)
            # lgamma((df + 1) / 2) - lgamma(df / 2), written as lgamma(1/2) - lbeta(1/2, df/2):
            # the plain difference cancels in float32 (0.9 nats off at df = 1e6).
            return tf.reduce_sum(math.lgamma(0.5) - tfp.math.lbeta(tf.constant(0.5, df.dtype), 0.5 * df)
                                 - 0.5 * (log_df + math.log(math.pi))
                                 - half * _log1p_square_ratio(tf.abs(z), log_df), -1)
        loc, scale = self._base_params()
        u = (z - loc) / scale
        return (-0.5 * tf.reduce_sum(u * u, -1) - tf.reduce_sum(tf.math.log(scale))
                - 0.5 * self.event_dim * math.log(2 * math.pi))
