"""Normalisation flow layers: `ActNorm` (Glow) and `BatchNorm` (RealNVP).

Both are per-dimension affine maps `x = z * exp(log_scale) + shift` whose
parameters are set from data: once at the start of training for `ActNorm`
(Kingma & Dhariwal 2018, section 3.1), from batch and moving statistics
for `BatchNorm` (Dinh et al. 2017, "Density estimation using Real NVP",
section 3.7 and appendix E).
"""

import math
import warnings

import keras
import numpy as np
import tensorflow as tf

from kerasflows.data_checks import subnormal_below
from kerasflows.layers.base import FlowLayer, batch_log_det, check_float
from kerasflows.layers.elementwise import ElementwiseAffine, affine_bijector

__all__ = ["ActNorm", "BatchNorm"]

#: A column that holds one value in `ActNorm`'s init batch, or whose standard
#: deviation there is at most this many times its dtype's epsilon times its largest
#: `|value|` (spread at the dtype's resolution), counts as constant there: it keeps
#: scale 1 and is only shifted. (A fixed 1e-6 took float64 columns such as Unix times
#: over an hour, std 1e3 at 1.7e9, for constant; a floor of 1 on `|value|` took
#: float32 columns of spread 1e-6 near 0, which the dtype resolves to 1e-13.)
ACTNORM_CONSTANT_EPS = 16


@keras.saving.register_keras_serializable(package="kerasflows")
class ActNorm(ElementwiseAffine):
    """Activation normalisation (Glow): a per-dimension affine map with data-dependent init,

    `x = (z + shift) * exp(log_scale) + center`, log-det `sum(log_scale)`.

    `data_init(x)` sets `center = mean(x)`, `shift = 0` and
    `log_scale = 0.5 * log(var(x))` per dimension from a batch `x` on
    the layer's data side, so that the inverse maps that batch to zero mean
    and unit variance. The trainable `shift` is in those standardised units and
    `center` stays fixed, so an optimizer's steps (Adam's are about its learning rate)
    are steps in standard deviations whatever the data's units: a shift in data units
    moved 100 standard deviations a step for a column of spread 1e-5, and a flow
    trained worse than it started. A column constant in the batch (one row, say; or a standard
    deviation at most `16 * eps * max|x|`, `eps` its dtype's resolution:
    `ACTNORM_CONSTANT_EPS`; or a variance below the dtype's smallest normal number)
    has no spread to standardise: it
    keeps `log_scale = 0` (scale 1) and is only shifted by its mean, and, when run
    eagerly (`Flow.initialize`, `fit`), a `UserWarning` names the layer and those
    columns (a scale set from it would multiply other data by 1000). It runs once:
    the non-trainable `initialized` weight (saved with the model) turns later
    calls into no-ops. `Flow.fit` calls it on the first batch.

    Example:

    ```python
    flow = kerasflows.Flow([AffineCoupling(), ActNorm()], event_dim=2)
    flow.compile(optimizer="adam")
    flow.fit(x)  # ActNorm standardises x before the first step
    ```

    Args:
        shift_units: `"standardized"` (the default: as above) or `"data"`, the map
            `x = z * exp(log_scale) + shift` with `shift` in data units and no
            `center`, as every ActNorm saved before `shift_units` existed was (their
            configs load as `"data"`, with the same numbers).
        **kwargs: passed to `FlowLayer`; the layer ignores any context.

    Raises:
        ValueError: for another `shift_units`.
    """

    needs_data_init = True
    legacy_config = {"shift_units": "data"}

    def __init__(self, shift_units="standardized", **kwargs):
        super().__init__(**kwargs)
        if shift_units not in ("standardized", "data"):
            raise ValueError("`shift_units` must be 'standardized' or 'data'. "
                             f"Received: shift_units={shift_units!r}")
        self.shift_units = shift_units

    def build_flow(self, event_dim):
        super().build_flow(event_dim)
        self.initialized = self.add_weight(shape=(), dtype="bool", initializer="zeros",
                                           trainable=False, name="initialized")
        self.center = None
        if self.shift_units == "standardized":
            self.center = self.add_weight(shape=(event_dim,), initializer="zeros",
                                          trainable=False, name="center")

    def static_weights(self):
        # set by `data_init`, before training
        return [self.initialized] + ([self.center] if self.center is not None else [])

    def data_shift(self):
        """The map's shift in data units, `[D]`: `x = z * exp(log_scale) + data_shift()`."""
        if self.center is None:
            return tf.convert_to_tensor(self.shift)
        return self.center + tf.exp(self.log_scale) * self.shift

    def bijector(self, context=None):
        return affine_bijector(self.data_shift(), self.log_scale)

    def is_data_initialized(self):
        return bool(self.initialized.numpy())

    def get_config(self):
        return {**super().get_config(), "shift_units": self.shift_units}

    def data_init(self, x, context=None):
        """Standardises the data-side batch `x` `[batch, D]`, unless already initialised;
        a column constant in `x` is only shifted (see the class docstring)."""
        x, _ = self.check_inputs(x, context)
        x = tf.cast(x, self.shift.dtype)
        # a column of large or of small values in units of a power of two near its
        # largest |value|, exactly (the squares of large values overflowed float32 from
        # a spread of 1.8e19: log_scale inf, every loss NaN; those of small ones fell
        # below its smallest normal number under a spread of 1e-19: called constant,
        # the flow fitted 1e20 times too wide); other columns as they are
        largest = tf.reduce_max(tf.abs(x), axis=0)
        info = np.finfo(x.dtype.as_numpy_dtype)
        # (2^minexp to 2^(maxexp - 1): the smallest normal and largest powers of two)
        exponent = tf.clip_by_value(tf.math.ceil(tf.math.log(largest) / np.log(2.0)),
                                    float(info.minexp), float(info.maxexp - 1))
        # small: where a spread the constant test keeps (ACTNORM_CONSTANT_EPS relative)
        # could have a variance below the smallest normal number (float32 5.7e-14,
        # float64 4e-140), with a margin of 2^4
        small = 16.0 * math.sqrt(float(info.tiny)) / (ACTNORM_CONSTANT_EPS * float(info.eps))
        large = 2.0 ** (info.maxexp // 2 - 20)
        unit = tf.where(tf.logical_and(tf.logical_or(largest > large, largest < small),
                                       tf.logical_and(largest > 0, tf.math.is_finite(largest))),
                        tf.pow(tf.constant(2.0, x.dtype), exponent), tf.ones_like(largest))
        mean, scaled_variance = tf.nn.moments(x / unit, axes=[0])
        mean = mean * unit
        done = tf.convert_to_tensor(self.initialized)
        # a batch of no rows has no moments (0 / 0): it leaves the layer as it was
        keep = tf.logical_or(done, tf.equal(tf.shape(x)[0], 0))
        constant = _constant_columns(x, largest / unit, unit, scaled_variance)
        # (no epsilon: constant columns are left out, and one of 1e-6 kept columns of a
        # standard deviation below ~1e-3 from unit scale: 0.17 at 1e-4)
        log_std = tf.where(constant, 0.0, 0.5 * tf.math.log(
            tf.where(constant, 1.0, scaled_variance)) + tf.math.log(unit))
        # NaN or inf on the data side (a flow's data-end inverse outside its domain)
        # gives no statistics: left uninitialised, not NaN for good
        finite = tf.reduce_all(tf.math.is_finite(x), axis=0)
        if tf.executing_eagerly() and not bool(keep) and not bool(tf.reduce_all(finite)):
            columns = tf.where(tf.logical_not(finite))[:, 0].numpy().tolist()
            raise ValueError(
                f"ActNorm '{self.name}' cannot initialise from its batch: column(s) "
                f"{', '.join(map(str, columns[:10]))} hold NaN or inf on its data side (the "
                "data, or what the layers after it made of them); give Flow.initialize / "
                "fit finite data inside the flow's data-end domain.")
        keep = tf.logical_or(keep, tf.logical_not(tf.reduce_all(finite)))
        if self.center is None:
            self.shift.assign(tf.where(keep, self.shift, mean))
        else:
            self.center.assign(tf.where(keep, self.center, mean))
            self.shift.assign(tf.where(keep, self.shift, tf.zeros_like(mean)))
        self.log_scale.assign(tf.where(keep, self.log_scale, log_std))
        self.initialized.assign(tf.logical_or(done, tf.logical_not(keep)))
        if tf.executing_eagerly() and not bool(keep):
            self._warn_constant_columns(tf.where(constant)[:, 0].numpy().tolist())

    def _warn_constant_columns(self, columns):
        """Says which columns `data_init` found constant in its batch, if any."""
        if not columns:
            return
        shown = ", ".join(str(c) for c in columns[:10])
        more = f" ({len(columns)} in all)" if len(columns) > 10 else ""
        which = (f"column {shown} is" if len(columns) == 1
                 else f"columns {shown}{more} are")
        warnings.warn(
            f"ActNorm '{self.name}' was initialised from a batch in which {which} "
            "constant (or spread only at the dtype's resolution): with no spread to "
            "standardise, they keep scale 1 and are only shifted by their mean. If they "
            "vary in the data, initialise from more rows: flow.initialize(x) on a larger "
            "sample before training, or a larger batch_size.", UserWarning, stacklevel=3)


def _constant_columns(x, largest, unit, scaled_variance):
    """Which columns of `x` `[N, D]` hold one value, or spread too little to trust
    (`ACTNORM_CONSTANT_EPS`, relative to the column's largest `|value|`), or whose
    variance in units of `unit`, a power of two per column (in which `largest` is
    that `|value|` and `scaled_variance` the variance), is below the dtype's smallest
    normal number, or whose values all are (subnormal: a few bits of precision).
    Compared with the first row, not through the variance: float32 rounding of a
    constant column's mean leaves it a variance > 0."""
    one_value = tf.reduce_all(tf.equal(x, x[:1]), axis=0)
    info = np.finfo(scaled_variance.dtype.as_numpy_dtype)
    tiny = tf.logical_or(
        scaled_variance <= tf.square(ACTNORM_CONSTANT_EPS * float(info.eps) * largest),
        tf.logical_or(scaled_variance < float(info.tiny), largest * unit < float(info.tiny)))
    return tf.logical_or(one_value, tiny)


def batch_moments(x):
    """The mean and variance of `x` `[N, D]` over its rows, and under a `tf.distribute`
    strategy over every replica's rows, as of the whole batch on one device (each
    replica's own half-batch statistics trained another flow than one device did),
    and that number of rows (NaN moments when it is 0)."""
    replicas = tf.distribute.get_replica_context()
    if replicas is None or replicas.num_replicas_in_sync == 1:
        return (*tf.nn.moments(x, axes=[0]), tf.shape(x)[0])
    rows, total = replicas.all_reduce(
        "sum", [tf.cast(tf.shape(x)[0], x.dtype), tf.reduce_sum(x, axis=0)])
    mean = total / rows
    squares = replicas.all_reduce("sum", tf.reduce_sum(tf.square(x - mean), axis=0))
    return mean, squares / rows, rows


@keras.saving.register_keras_serializable(package="kerasflows")
class BatchNorm(FlowLayer):
    """Batch normalisation as a flow layer (RealNVP).

    Density direction (data `x` to base `z`):
    `z = (x - mean) / sqrt(var + epsilon) * exp(log_gamma) + beta`.
    In training (`inverse_and_log_det(x, training=True)`, which `Flow.fit`
    uses) `mean`/`var` are the batch statistics (under a `tf.distribute`
    strategy, of every replica's rows: the same as on one device) and the
    moving statistics are updated: `moving = momentum * moving + (1 - momentum) * batch`.
    Otherwise, in both directions, the moving statistics are used. The
    log-det `sum(log_gamma - 0.5 * log(var + epsilon))` is exact for the map
    with those statistics held fixed, as in the paper.

    Example:

    ```python
    flow = kerasflows.Flow([AffineCoupling(), BatchNorm(), AffineCoupling()], event_dim=2)
    ```

    Args:
        momentum: moving-average momentum, in [0, 1).
        epsilon: added to the variance, > 0.
        **kwargs: passed to `FlowLayer`; the layer ignores any context.

    Raises:
        ValueError: for momentum outside [0, 1), or an epsilon that is not > 0 in the
            layer's dtype as TensorFlow reads it (`data_checks.subnormal_below`).
    """

    eval_in_blocks = True
    #: Its training call takes statistics over the whole batch, every replica's rows
    #: under a `tf.distribute` strategy (`batch_moments`).
    batch_statistics = True

    def __init__(self, momentum=0.9, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.momentum = check_float("momentum", momentum, lambda v: 0 <= v < 1, "in [0, 1)")
        # (and one the layer's dtype holds, as TensorFlow reads it: 1e-50 is 0 in float32,
        # and a constant column of a batch gave z = NaN. Its CPU kernels read subnormal
        # numbers as 0, but float16's, which they compute in float32: 1e-5 is one)
        dtype = np.dtype(self.variable_dtype)
        tiny = subnormal_below(dtype) or float(np.finfo(dtype).smallest_subnormal)
        self.epsilon = check_float("epsilon", epsilon, lambda v: v >= tiny,
                                   f"> 0 in the layer's dtype, {self.variable_dtype} "
                                   f"(at least {tiny:.4g})")

    def build_flow(self, event_dim):
        weight = lambda name, init, trainable=True: self.add_weight(
            shape=(event_dim,), initializer=init, trainable=trainable, name=name)
        self.log_gamma = weight("log_gamma", "zeros")
        self.beta = weight("beta", "zeros")
        self.moving_mean = weight("moving_mean", "zeros", trainable=False)
        self.moving_variance = weight("moving_variance", "ones", trainable=False)

    def _bijector_for(self, mean, variance):
        """Forward `x = (z - beta) * exp(-log_gamma) * sqrt(var + eps) + mean`."""
        log_scale = 0.5 * tf.math.log(variance + self.epsilon) - self.log_gamma
        return affine_bijector(mean - self.beta * tf.exp(log_scale), log_scale)

    def bijector(self, context=None):
        """The inference-mode bijector, built from the moving statistics."""
        return self._bijector_for(self.moving_mean, self.moving_variance)

    def _update_moving(self, mean, variance, rows):
        """Moves the moving statistics towards a batch's; a batch of no rows (NaN
        moments) leaves them as they were."""
        m, empty = self.momentum, tf.equal(rows, 0)
        for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
            moving.assign(tf.where(empty, moving, m * moving + (1.0 - m) * batch))

    def inverse_and_log_det(self, x, context=None, training=False):
        """Maps data `x` to base `z`; with `training=True` uses and records batch
        statistics, unless the layer is frozen (`trainable=False`, as
        `keras.layers.BatchNormalization` then runs in inference mode)."""
        if not training or not self.trainable:
            return super().inverse_and_log_det(x, context=context)
        x, _ = self.check_inputs(x, context)
        mean, variance, rows = batch_moments(x)
        self._update_moving(tf.stop_gradient(mean), tf.stop_gradient(variance), rows)
        b = self._bijector_for(mean, variance)
        return b.inverse(x), batch_log_det(b.inverse_log_det_jacobian(x, event_ndims=1), x)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}
