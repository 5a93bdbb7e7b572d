"""Elementwise flow layers: `Sigmoid`, `Logit`, `Exp` and `ElementwiseAffine`.

Each maps every coordinate on its own, so its Jacobian is diagonal and the
log-det is a sum over dimensions; the math is TFP's (`tfb.Sigmoid`, `tfb.Exp`,
`tfb.Shift`, `tfb.Scale`).
"""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from kerasflows.layers.base import FlowLayer

tfb = tfp.bijectors

__all__ = ["Sigmoid", "Logit", "Exp", "ElementwiseAffine", "affine_bijector"]


def affine_bijector(shift, log_scale):
    """The TFP bijector `x = z * exp(log_scale) + shift` (log-det `sum(log_scale)`).

    Of the values, not of variables: TFP shares its cache between equal bijectors, and
    two holding the same variables are equal whatever the variables hold, so one built
    after a weight change answered an input from the cache of one built before it."""
    return tfb.Chain([tfb.Shift(tf.convert_to_tensor(shift)),
                      tfb.Scale(log_scale=tf.convert_to_tensor(log_scale))])


@keras.saving.register_keras_serializable(package="kerasflows")
class Sigmoid(FlowLayer):
    """Logistic sigmoid: forward maps R to (0, 1), `x = 1 / (1 + exp(-z))`.

    Useful as the last layer of a flow for data in (0, 1); `inverse` of a
    value outside (0, 1) is NaN, and of 0 or 1 (in the layer's dtype) not
    finite, so as the data end (`data_domain`) it has `fit` and `evaluate`
    refuse such data with a ValueError naming the row, column and value
    (clip values on the edge into the open interval first).

    Example:

    ```python
    flow = kerasflows.Flow([AffineCoupling(), Permute(), Sigmoid()], event_dim=2)
    ```

    Args:
        **kwargs: passed to `FlowLayer` (`context_dim`, `name`, `dtype`);
            the layer ignores any context.
    """

    eval_in_blocks = True
    data_domain = (0.0, 1.0)

    def bijector(self, context=None):
        return tfb.Sigmoid()


@keras.saving.register_keras_serializable(package="kerasflows")
class Logit(FlowLayer):
    """Logit, the inverse of `Sigmoid`: forward maps (0, 1) to R, `x = log(z / (1 - z))`.

    Its forward needs values in (0, 1): use it after a layer that gives them (a
    `Sigmoid` earlier in the stack). For data in (0, 1), the data end is `Sigmoid`,
    not `Logit`: `Sigmoid`'s inverse, the density direction, maps (0, 1) to R;
    `Logit`'s maps R into (0, 1), and its samples outside (0, 1) come out NaN.

    Args:
        **kwargs: passed to `FlowLayer`; the layer ignores any context.
    """

    eval_in_blocks = True

    def bijector(self, context=None):
        return tfb.Invert(tfb.Sigmoid())


@keras.saving.register_keras_serializable(package="kerasflows")
class Exp(FlowLayer):
    """Exponential: forward maps R to (0, inf), `x = exp(z)`; log-det `sum(z)`.

    For positive data as the last layer of a flow: `inverse` of 0 is -inf and
    of a negative value NaN, so as the data end (`data_domain`) it has `fit`
    and `evaluate` refuse such data with a ValueError naming the row, column
    and value (shift data holding zeros first).

    Args:
        **kwargs: passed to `FlowLayer`; the layer ignores any context.
    """

    eval_in_blocks = True
    data_domain = (0.0, math.inf)

    def bijector(self, context=None):
        return tfb.Exp()


@keras.saving.register_keras_serializable(package="kerasflows")
class ElementwiseAffine(FlowLayer):
    """Learned per-dimension affine map `x = z * exp(log_scale) + shift`.

    Starts at the identity (`shift = 0`, `log_scale = 0`); the log-det is
    `sum(log_scale)`, the same for every example.

    Example:

    ```python
    flow = kerasflows.Flow([ElementwiseAffine()], event_dim=2)  # a diagonal Gaussian
    ```

    Args:
        **kwargs: passed to `FlowLayer`; the layer ignores any context.
    """

    eval_in_blocks = True

    def build_flow(self, event_dim):
        self.shift = self.add_weight(shape=(event_dim,), initializer="zeros", name="shift")
        self.log_scale = self.add_weight(shape=(event_dim,), initializer="zeros",
                                         name="log_scale")

    def bijector(self, context=None):
        return affine_bijector(self.shift, self.log_scale)
