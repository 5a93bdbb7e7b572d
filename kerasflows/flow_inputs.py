"""A flow's inputs: data and contexts checked and converted (`FlowInputs`, a
mixin of `kerasflows.Flow`), and the width a context encoder gives."""

import keras
import numpy as np
import tensorflow as tf

from kerasflows.data_warnings import numeric
from kerasflows.layers.base import check_event_dim, context_rows
from kerasflows.layers.checks import nan_rows, nonfinite_rows
from kerasflows.layers.embedding import label_embedding

__all__ = ["FlowInputs", "as_float", "context_for", "encoded_context_dim"]


def as_float(value, dtype, what):
    """`value` (an array, list or tensor of floats or integers) as a `dtype` tensor.

    Integer data and labels are common (pixel values, class labels) and are
    converted, in eager calls and inside traced steps alike; anything else
    (booleans, strings, objects) raises a ValueError naming its dtype."""
    if not (tf.is_tensor(value) or isinstance(value, tf.Variable)):
        array = np.asarray(value)
        if array.dtype.kind == "V" and numeric(array.dtype):
            # bfloat16 and float8 (`ml_dtypes`; `.numpy()` of a bfloat16 tensor): NumPy
            # kind "V", which the check below refused as not numbers. Through float32,
            # which holds each exactly (TensorFlow casts no float8 "fnuz" type)
            return tf.convert_to_tensor(array.astype(np.float32), dtype=dtype)
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


def context_for(layer, context):
    """The context a layer takes: unconditional layers (context_dim=None) get None."""
    return None if layer.context_dim is None else context


def _output_spec(layer, spec):
    """`layer`'s output for the symbolic input `spec`, the layer built for it first
    as calling it builds it, but not called: a call on a free symbolic input is a
    node of the layer's, which a model that also calls the layer in its own graph
    (another head fed by the encoder) then failed to load with ("Graph
    disconnected"). A layer of no `build` of its own is built by tracing its `call`,
    as Keras does; others as Keras' wrappers build the layers they hold."""
    if not layer.built:
        if getattr(layer.build, "_is_default", False):    # Keras' own, which builds nothing
            layer.compute_output_spec(spec)
        layer.build(spec.shape)
    return layer.compute_output_spec(spec)


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
        out = _output_spec(encoder, keras.KerasTensor((None, context_dim)))
        given = f"(None, {context_dim})"
    except Exception:       # a layer Keras cannot call symbolically: on one row of zeros
        out = encoder(tf.zeros([1, context_dim], keras.backend.floatx()))
        given = f"(1, {context_dim})"
    if len(out.shape) != 2 or out.shape[1] is None:
        raise ValueError(f"`context_encoder` must map a context of shape (batch, {context_dim}) "
                         f"to features of shape (batch, E); it maps {given} to "
                         f"{tuple(out.shape)}.")
    return int(out.shape[1])


class FlowInputs:
    """A mixin of `kerasflows.Flow`: its inputs checked (`event_dim` columns,
    numbers, one context row per row or one shared) and converted to the
    flow's dtype, and the context encoded for the layers."""

    def _prepare(self, x, context=None, what="inputs"):
        if isinstance(x, tf.data.Dataset):
            raise ValueError(f"Flow {what} must be an array or tensor of shape (batch, "
                             f"{self.event_dim}); received a tf.data.Dataset (flow.predict("
                             "dataset) gives the log-densities of its batches).")
        x = as_float(x, self.compute_dtype, what)
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
        context = as_float(context, self.compute_dtype, "context")
        check_event_dim("Flow", context, self.context_dim, what="context")
        return context

    def _encode(self, context, training=False):
        """The context the layers see: `context_encoder(context)` as the flow's dtype,
        NaN in the rows of a context that is not finite, or that holds a label the
        encoder's `ClassEmbedding` does not know (`_unencodable` then makes those rows
        NaN): in a TensorFlow graph a Dense-ReLU encoder's fused kernel turned a NaN
        input, or the NaN features of an unknown label, into finite features, and the
        row into plausible numbers."""
        if context is None or self.context_encoder is None:
            return context
        encoded = tf.cast(self.context_encoder(context, training=training), self.compute_dtype)
        context = tf.convert_to_tensor(context)
        embedding = label_embedding(self)
        unknown = None
        if embedding is not None and context.shape[-1] == 1:
            unknown = tf.logical_not(embedding.known(tf.reshape(context, [-1]))[1])
        if not context.dtype.is_floating:
            return encoded if unknown is None else nan_rows(unknown, encoded)
        bad = nonfinite_rows(context)
        return nan_rows(bad if unknown is None else tf.logical_or(bad, unknown), encoded)

    def _split_inputs(self, inputs, context=None):
        """`(x, context)` for a conditional flow; `x` or `(x,)` (a batch's form in
        `fit`) for an unconditional one."""
        if isinstance(inputs, (tuple, list)) and context is None:
            if self.context_dim is None:
                if len(inputs) != 1:
                    raise ValueError(
                        "This flow is not conditional (context_dim=None): it takes x of shape "
                        f"(batch, {self.event_dim}) alone, or (x,); received a sequence of "
                        f"{len(inputs)} items.")
                return inputs[0], None
            if len(inputs) != 2:
                raise ValueError("A conditional flow takes inputs as (x, context); "
                                 f"received a sequence of {len(inputs)} items.")
            return inputs[0], inputs[1]
        return inputs, context
