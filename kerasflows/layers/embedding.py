"""`ClassEmbedding`: a class label as learned features, a conditional flow's context encoder."""

import keras
import numpy as np
import tensorflow as tf

from kerasflows.layers.base import check_float, check_positive_int

__all__ = ["ClassEmbedding", "label_embedding"]


@keras.saving.register_keras_serializable(package="kerasflows")
class ClassEmbedding(keras.layers.Layer):
    """Maps a class label `[batch, 1]` (0..num_classes-1) to learned features `[batch, features]`.

    For class-conditional flows: `Flow(..., context_dim=1,
    context_encoder=ClassEmbedding(10))` learns p(x | label), each label
    taking a row of a `[num_classes, features]` table trained with the flow.
    The label may come as a float (as contexts do: a spin box, a CSV file);
    it is rounded to the nearest integer (halves to the even one, as
    `tf.round`: 2.5 is label 2). A label outside 0..num_classes-1
    gets NaN features, so the flow's log-densities and samples for it are
    NaN: the same on the CPU, under XLA and in an exported SavedModel (a
    gather alone would raise on the CPU and clamp under XLA). `Flow.fit` and
    `Flow.evaluate` check array data's labels first (`check_context`) and
    raise for such a label, rather than train on NaN.

    The rows start as standard normal draws (`stddev=1`), on the scale of
    standardised data, not Keras `Embedding`'s default `uniform(-0.05,
    0.05)`: with near-zero rows the conditioners barely see the label at
    first and learn to use it slowly. On the 8x8 digits
    (`benchmarks/class_embedding.py`, seeds 0 and 1: an NSF of 5 layers, 30
    epochs; a logistic regression on real digits classifying 200 samples
    per label), Keras' `Embedding` with 8 features gave test NLL -14.9 and
    -13.3 nats per image and 34% of the samples classified as their label
    (with 32 features: -17.5, -16.3 and 74%), this layer with 32 features
    -18.6, -17.9 and 98% (8 features: 92%, 86%); the flow without the label
    -13.1 and -12.2.

    Args:
        num_classes: the number of labels K.
        features: the width of each label's row.
        stddev: the standard deviation of the rows' initial values.

    Call arguments:
        labels: `[batch, 1]` (or `[batch]`) labels.

    Returns:
        `[batch, features]`.
    """

    def __init__(self, num_classes, features=32, stddev=1.0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.features = check_positive_int("features", features)
        self.stddev = check_float("stddev", stddev, lambda v: v > 0, "> 0")
        self.table = self.add_weight(
            shape=(self.num_classes, self.features), name="table",
            initializer=keras.initializers.RandomNormal(stddev=self.stddev))

    @property
    def input_dtype(self):
        """float32, whatever the policy: Keras casts float inputs to this, and a mixed
        policy's float16 holds whole numbers exactly to 2048 only (bfloat16: 256), so
        label 2049 read row 2048; float32 holds them to 2**24."""
        return "float32"

    def build(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] not in (1, None)):
            raise ValueError(f"ClassEmbedding takes one label per row, shape (batch, 1); "
                             f"received shape {shape}.")
        self.built = True

    def known(self, labels):
        """`(labels, valid)`: the label tensor `labels`, rounded if it is of floats, and
        whether each is one this layer has a row for (0..num_classes-1), checked in
        the labels' own dtype: a cast first made NaN label 0 under XLA and wrapped
        int64 labels into 0..K-1. (`check_context` is the same rule in NumPy.)"""
        if labels.dtype.is_floating:
            labels = tf.round(labels)
        return labels, (labels >= 0) & (labels < self.num_classes)

    def call(self, labels):
        labels, valid = self.known(tf.reshape(labels, [-1]))
        index = tf.cast(tf.where(valid, labels, tf.zeros_like(labels)), "int32")
        rows = tf.gather(tf.cast(self.table, self.compute_dtype), index)
        return tf.where(valid[:, None], rows, tf.constant(float("nan"), rows.dtype))

    def check_context(self, labels, name="context", where=None):
        """Raises ValueError if an array of `labels` holds one this layer maps to NaN
        (outside 0..num_classes-1 once rounded, or not finite), naming it and where it
        is: `where(i)` for row `i` ("line 61" of a file), by default "row i"."""
        a = np.asarray(labels, dtype="float64").reshape(-1)
        r = np.round(a)
        bad = ~((r >= 0) & (r < self.num_classes))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name}: labels for ClassEmbedding(num_classes={self.num_classes}) are "
                f"0..{self.num_classes - 1}; received {float(a[i])!r} in "
                f"{where(i) if where is not None else f'row {i}'} "
                f"({int(bad.sum())} row{'s' if bad.sum() > 1 else ''} out of range).")

    def compute_output_shape(self, input_shape):
        return (tuple(input_shape)[0], self.features)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, features=self.features, stddev=self.stddev)
        return config


def label_embedding(flow):
    """The flow's `ClassEmbedding` (anything with `check_context`) that reads its
    context: the context encoder, the first layer of a `keras.Sequential` one
    (`kerasflows train --context-classes` with `--context-encoder`), or the layer
    of a functional one that takes its input; None if there is none."""
    encoder = flow.context_encoder
    if isinstance(encoder, keras.Sequential) and encoder.layers:
        encoder = encoder.layers[0]
    elif isinstance(encoder, keras.Model) and len(getattr(encoder, "inputs", None) or ()) == 1:
        encoder = next((layer for layer in encoder.layers
                        if hasattr(layer, "check_context") and _reads(layer, encoder.inputs[0])),
                       None)
    return encoder if hasattr(encoder, "check_context") else None


def _reads(layer, tensor):
    """Whether `layer` (of a functional model) is called on `tensor` alone."""
    try:
        return layer.input is tensor
    except (AttributeError, ValueError):    # called more than once, or never
        return False
