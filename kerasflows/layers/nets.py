"""Conditioner networks, written as Keras 3 layers sized by plain arguments.

`MLP` drives coupling layers (`MADE`, the autoregressive layers'
conditioner, is in `kerasflows.layers.made`); here too what both share: the
initialisation of hidden layers and the narrow output layers' product.
"""

import keras
import numpy as np
import tensorflow as tf

from kerasflows.layers.base import check_positive_int
from kerasflows.layers.checks import check_bool

__all__ = ["MLP", "check_hidden_units", "check_activation", "narrow_matmul", "output_matmul",
           "NARROW_OUTPUT_UNITS"]


def check_hidden_units(hidden_units):
    """Returns `hidden_units` as a tuple of positive ints, or raises ValueError."""
    if isinstance(hidden_units, (int, np.integer)):
        hidden_units = (hidden_units,)
    if isinstance(hidden_units, (str, bytes)):   # "64" would be read as 6 and 4
        raise ValueError("`hidden_units` must be a sequence of positive integers, such as "
                         f"(64, 64). Received: hidden_units={hidden_units!r}")
    try:
        units = tuple(check_positive_int("hidden_units", u) for u in hidden_units)
    except TypeError:
        raise ValueError("`hidden_units` must be a sequence of positive integers. "
                         f"Received: hidden_units={hidden_units!r}") from None
    return units


def check_activation(activation):
    """Returns `activation` serialized (a Keras activation name, or the config of a
    registered function), or raises ValueError if the layer could not be rebuilt
    from it: a lambda, or a function Keras cannot find by name (an unregistered
    one, `tf.nn.swish`). Layers keep the serialized form and rebuild from it."""
    if getattr(activation, "__name__", None) == "<lambda>":
        serialized = None       # safe_mode refuses a lambda on load; serialize would warn
    else:
        try:
            serialized = keras.activations.serialize(keras.activations.get(activation))
            keras.activations.get(serialized)
        except (ValueError, TypeError):
            serialized = None
    if serialized is None:
        raise ValueError("`activation` must be a Keras activation name, such as 'relu', or a "
                         "function registered with keras.saving.register_keras_serializable. "
                         f"Received: activation={activation!r}")
    return serialized


def _dense_kwargs(layer):
    return {"dtype": layer.dtype_policy}


#: An `MLP` with at most this many outputs (a 2-D affine coupling's shift and
#: log-scale), or a MADE with at most this many connected outputs (a 2-D MAF's
#: second dimension), computes its output layer's gradient with `narrow_matmul`.
NARROW_OUTPUT_UNITS = 2


@tf.custom_gradient
def narrow_matmul(h, kernel):
    """`h @ kernel` for `h [batch, units]` and a `kernel [units, n]` of a few
    columns, whose gradient is written out column by column.

    XLA:CPU runs both products of the plain gradient as matrix products
    shaped badly for Eigen: the kernel's `h^T dy` (`[units, batch] x
    [batch, n]`) and the input's `dy kernel^T` (inner dimension n). Here the
    kernel's gradient is n matrix-vector products and the input's a sum of n
    outer products, which XLA fuses into the ReLU gradient after it. The
    benchmark's 2-D RealNVP train step, same-process A/B
    (`benchmarks/narrow_ab.py`, medians over rounds): 2.31 -> 2.14 ms with two
    shards, as the benchmark runs it, and 2.81 -> 2.16 ms in one call; with
    four outputs (4-D RealNVP) it was slower, hence `NARROW_OUTPUT_UNITS`.
    The product itself stays one matrix product (n matrix-vector products
    are the slower for evaluation's large batches). Second derivatives go
    through the written-out gradient like any ops.
    """
    def grad(dy):
        n = kernel.shape[-1]
        dh = tf.add_n([dy[:, j:j + 1] * kernel[:, j] for j in range(n)])
        dkernel = tf.stack([tf.linalg.matvec(h, dy[:, j], transpose_a=True)
                            for j in range(n)], axis=1)
        return dh, dkernel
    return tf.matmul(h, kernel), grad


def takes_narrow_matmul(h, columns):
    """Whether an output layer of `columns` outputs on `h` goes through
    `narrow_matmul`: at most `NARROW_OUTPUT_UNITS` of them, `h` `[batch, units]`."""
    return columns <= NARROW_OUTPUT_UNITS and len(h.shape) == 2


def output_matmul(h, kernel):
    """`h @ kernel` for an output layer: through `narrow_matmul` where
    `takes_narrow_matmul`, else a plain product."""
    if takes_narrow_matmul(h, kernel.shape[-1]):
        return narrow_matmul(h, kernel)
    return tf.matmul(h, kernel)


def hidden_kernel_init():
    """Weights of a hidden layer: uniform in +-1/sqrt(fan_in), as PyTorch's `nn.Linear`.

    A new initializer per weight: an unseeded Keras initializer fixes its
    seed when it is made, so a shared one would give equal weights.
    """
    return keras.initializers.VarianceScaling(1 / 3, mode="fan_in", distribution="uniform")


def hidden_bias_init(fan_in):
    """Biases of a hidden layer: uniform in +-1/sqrt(fan_in), as PyTorch's `nn.Linear`
    (a new initializer per weight, as `hidden_kernel_init`).

    Random rather than zero biases matter most for the conditioners of 2-D
    flows, which see one or two inputs: with zero biases every ReLU of the
    first layer starts with its kink at the origin; random ones spread the
    kinks over the data's range (measurements: `benchmarks/results/HISTORY.md`,
    linked from the README's Benchmarks section).
    """
    bound = 1 / np.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


@keras.saving.register_keras_serializable(package="kerasflows")
class MLP(keras.layers.Layer):
    """A dense network `[batch, in] -> [batch, out_units]`.

    The last layer starts at zero (`zero_init=True`), so the flow layer it
    drives starts close to its identity (or uniform spline) setting; the
    hidden layers' weights and biases start uniform in +-1/sqrt(fan_in)
    (see `hidden_bias_init`).

    Args:
        out_units: number of outputs.
        hidden_units: sizes of the hidden layers.
        activation: a Keras activation name, or a function registered with
            `keras.saving.register_keras_serializable`.
        zero_init: start the output layer at zero (else like the hidden ones).
    """

    def __init__(self, out_units, hidden_units=(64, 64), activation="relu", zero_init=True,
                 **kwargs):
        super().__init__(**kwargs)
        self.out_units = check_positive_int("out_units", out_units)
        self.hidden_units = check_hidden_units(hidden_units)
        self.activation = check_activation(activation)
        self.zero_init = check_bool("zero_init", zero_init)
        self.hidden = [keras.layers.Dense(u, activation=self.activation, name=f"hidden_{i}",
                                          kernel_initializer=hidden_kernel_init(),
                                          **_dense_kwargs(self))
                       for i, u in enumerate(self.hidden_units)]
        init = "zeros" if self.zero_init else hidden_kernel_init()
        self.out = keras.layers.Dense(self.out_units, kernel_initializer=init, name="out",
                                      **_dense_kwargs(self))

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.hidden:
            layer.bias_initializer = hidden_bias_init(shape[-1])
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)
        if not self.zero_init:
            self.out.bias_initializer = hidden_bias_init(shape[-1])
        self.out.build(shape)
        self.built = True

    def call(self, x):
        for layer in self.hidden:
            x = layer(x)
        if not takes_narrow_matmul(x, self.out_units):
            return self.out(x)
        # The same product and bias as self.out(x), with a cheaper gradient.
        return narrow_matmul(x, tf.cast(self.out.kernel, x.dtype)) + tf.cast(self.out.bias, x.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.out_units,)

    def get_config(self):
        config = super().get_config()
        config.update(out_units=self.out_units, hidden_units=list(self.hidden_units),
                      activation=self.activation, zero_init=self.zero_init)
        return config
