"""`MADE` (Germain et al. 2015, "MADE: Masked Autoencoder for Distribution
Estimation"), the conditioner of autoregressive layers: the parameters it
outputs for dimension d depend only on inputs 1..d-1 (and on the context,
when there is one); its masks; and its exact inverse solve."""

import keras
import numpy as np
import tensorflow as tf

from kerasflows.layers.base import check_positive_int, solve_nonempty
from kerasflows.layers.checks import check_bool, shared_context
from kerasflows.layers.nets import (check_activation, check_hidden_units, hidden_bias_init,
                                    hidden_kernel_init, output_matmul)

__all__ = ["MADE", "made_degrees", "made_masks", "hidden_degrees", "PRUNE_MADE"]

#: MADE leaves out of its products the last data input, which its masks connect
#: to no unit, and (without a context) the first dimension's outputs, which
#: they connect to none: the same numbers from smaller products (2-D
#: autoregressive spline train step 3.58 -> 2.74 ms, with `narrow_matmul`;
#: 2-D MAF within noise; `benchmarks/narrow_ab.py`). A switch for A/B runs.
PRUNE_MADE = True


def hidden_degrees(event_dim, units, context_dim=0):
    """Degrees of a MADE hidden layer's `units` (see `made_masks`): a unit of degree
    `k` sees data inputs `1..k` only (and the context)."""
    low = 0 if context_dim else 1
    return low + np.arange(units) % max(event_dim - low, 1)


def made_degrees(event_dim, hidden_units, params_per_dim, context_dim=0):
    """Degrees of a MADE's units, layer by layer, as int32 numpy vectors.

    The inputs are the `event_dim` data inputs (degrees 1..D) followed by the
    `context_dim` context inputs (degree 0, seen by every unit); then each
    hidden layer (`hidden_degrees`: 1..D-1 cycled, 0..D-1 when there is
    context, so the first dimension's parameters can still depend on it); last
    the outputs, output `j` belonging to dimension `j // params_per_dim + 1`.
    A hidden unit sees the units below of degree at most its own, an output
    unit those of smaller degree (`made_masks`), so output d depends on inputs
    1..d-1 only.
    """
    D = event_dim
    inputs = np.concatenate([np.arange(1, D + 1), np.zeros(context_dim, int)])
    hidden = [hidden_degrees(D, units, context_dim) for units in hidden_units]
    outputs = np.repeat(np.arange(1, D + 1), params_per_dim)
    return [degrees.astype(np.int32) for degrees in (inputs, *hidden, outputs)]


def made_masks(event_dim, hidden_units, params_per_dim, context_dim=0):
    """Connectivity masks of a MADE, as float32 numpy arrays `[fan_in, fan_out]`:
    entry `[i, j]` is 1 where unit `j` sees unit `i` of the layer below, by their
    `made_degrees` (`MADE` builds the same masks in the graph)."""
    degrees = made_degrees(event_dim, hidden_units, params_per_dim, context_dim)
    masks = []
    for i, (below, above) in enumerate(zip(degrees[:-1], degrees[1:])):
        connect = np.greater if i == len(degrees) - 2 else np.greater_equal
        masks.append(connect(above[None, :], below[:, None]).astype(np.float32))
    return masks


@keras.saving.register_keras_serializable(package="kerasflows")
class MADE(keras.layers.Layer):
    """Masked autoregressive network: `[batch, D] (+ context) -> [batch, D, P]`.

    Output `[:, d, :]` depends only on inputs `[:, :d]` and on the context.

    Args:
        params_per_dim: outputs P per input dimension.
        hidden_units: sizes of the hidden layers.
        activation: a Keras activation name, or a registered function (see
            `kerasflows.layers.nets.check_activation`).
        context_dim: size of the context input, or None.
        zero_init: start the output layer at zero (the hidden layers start
            as in `MLP`).

    Call arguments:
        x: `[batch, D]` inputs.
        context: `[batch, context_dim]`, when conditional.
        params_first: return `[batch, P, D]` instead (the same numbers; the
            output layer's columns are reordered, so each parameter is a
            contiguous `[batch, D]` slice for the elementwise map that reads
            it).
    """

    def __init__(self, params_per_dim, hidden_units=(64, 64), activation="relu",
                 context_dim=None, zero_init=True, **kwargs):
        super().__init__(**kwargs)
        self.params_per_dim = check_positive_int("params_per_dim", params_per_dim)
        self.hidden_units = check_hidden_units(hidden_units)
        self.activation_name = check_activation(activation)
        self.activation = keras.activations.get(self.activation_name)
        self.context_dim = check_positive_int("context_dim", context_dim, allow_none=True)
        self.zero_init = check_bool("zero_init", zero_init)

    def build(self, input_shape):
        D = int(input_shape[-1])
        self.event_dim = D
        C = self.context_dim or 0
        self._degrees = made_degrees(D, self.hidden_units, self.params_per_dim, C)
        sizes = [D + C, *self.hidden_units, D * self.params_per_dim]
        self.kernels, self.biases = [], []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2
            zero = last and self.zero_init
            self.kernels.append(self.add_weight(
                shape=(fan_in, fan_out), initializer="zeros" if zero else hidden_kernel_init(),
                name=f"kernel_{i}"))
            self.biases.append(self.add_weight(
                shape=(fan_out,), initializer="zeros" if zero else hidden_bias_init(fan_in),
                name=f"bias_{i}"))
        self.built = True

    def call(self, x, context=None, params_first=False):
        return self.apply(self.prepared(params_first), x, context=context,
                          params_first=params_first)

    def prepared(self, params_first=False):
        """The weights as `apply` takes them: masked, in the compute dtype, the
        unused rows and columns left out, the output layer reordered for
        `params_first`. A loop that runs the network on each pass (the
        autoregressive layers' sequential direction) prepares them once, ahead
        of it: weight-only ops inside a `tf.while_loop` carried their operands
        into its gradients, where XLA could not take a transpose's permutation
        as a constant (a 3-D IAF's second-order gradients under `jit_compile`).
        Returns `(hidden, output)`: `hidden` a list of `(kernel, bias)`,
        `output` a tuple that `apply` reads."""
        dtype = self.compute_dtype
        D, P = self.event_dim, self.params_per_dim
        # The last data input feeds no hidden unit, and without a context the
        # first dimension's parameters see none (they are the output bias): both
        # are left out of the products, which leaves the numbers as they are.
        prune = PRUNE_MADE and D > 1
        weights = []
        for i, (k, b) in enumerate(zip(self._masked_kernels(dtype), self.biases)):
            b = tf.cast(b, dtype)
            if i == 0 and prune:
                k = k[:D - 1] if self.context_dim is None else tf.concat([k[:D - 1], k[D:]], 0)
            weights.append((k, b))
        (k, b), hidden = weights[-1], weights[:-1]
        if not (prune and self.context_dim is None):
            return hidden, (self._params_first_output(k, b) if params_first else (k, b))
        # The output layer for dimensions 2..D only, with the first's bias beside it.
        k, b = tf.reshape(k, [-1, D, P])[:, 1:], tf.reshape(b, [D, P])
        if params_first:
            k, first, live = tf.transpose(k, [0, 2, 1]), tf.transpose(b[:1]), tf.transpose(b[1:])
        else:
            first, live = b[:1], b[1:]
        k, live = tf.reshape(k, [-1, (D - 1) * P]), tf.reshape(live, [(D - 1) * P])
        return hidden, (k, live, first)

    def apply(self, prepared, x, context=None, params_first=False):
        """The network on `x` (and `context`) with `prepared(params_first)`'s weights:
        what `call` computes."""
        dtype = self.compute_dtype
        D, P = self.event_dim, self.params_per_dim
        hidden, output = prepared
        h = tf.cast(x[:, :D - 1] if PRUNE_MADE and D > 1 else x, dtype)
        if context is not None:
            h = tf.concat([h, tf.cast(shared_context(context, x), dtype)], axis=-1)
        for k, b in hidden:
            h = self.activation(tf.matmul(h, k) + b)
        if len(output) == 2:
            k, b = output
            h = tf.matmul(h, k) + b
            return tf.reshape(h, [-1, P, D] if params_first else [-1, D, P])
        k, live, first = output
        h = output_matmul(h, k) + live
        shape = [-1, P, D - 1] if params_first else [-1, D - 1, P]
        # the first dimension's parameters on every row, as an added bias is: the
        # gradient of a tf.broadcast_to to the batch's (dynamic) size did not compile
        # with XLA inside a while loop (3-D IAF's density: BroadcastGradientArgs)
        first = tf.zeros_like(h[:, :P]) + tf.reshape(first, [1, P])
        first = tf.reshape(first, [-1, P, 1] if params_first else [-1, 1, P])
        return tf.concat([first, tf.reshape(h, shape)], axis=2 if params_first else 1)

    def _masked_kernels(self, dtype):
        """The kernels in `dtype`, each times its mask (`made_masks`'s). The masks are
        built in the graph from the units' degrees (`made_degrees`), vectors as long
        as a layer: as constants the size of the kernels they were copied into every
        traced function (a 784-D MAF's SavedModel as large as twice its weights)."""
        last = len(self.kernels) - 1
        masked = []
        for i, kernel in enumerate(self.kernels):
            below, above = (tf.constant(d) for d in self._degrees[i:i + 2])
            connect = tf.greater if i == last else tf.greater_equal
            mask = tf.cast(connect(above[None, :], below[:, None]), dtype)
            masked.append(tf.cast(kernel, dtype) * mask)
        return masked

    def _params_first_output(self, kernel, bias):
        """The output layer's masked `kernel [units, D*P]` and `bias [D*P]` with output
        column `d * P + p` moved to `p * D + d` (by transposes, whose gradient stays
        dense, unlike a gather's)."""
        D, P = self.event_dim, self.params_per_dim
        kernel = tf.reshape(tf.transpose(tf.reshape(kernel, [-1, D, P]), [0, 2, 1]), [-1, D * P])
        return kernel, tf.reshape(tf.transpose(tf.reshape(bias, [D, P])), [D * P])

    def solve(self, transform, v, context=None):
        """Solves an autoregressive map one dimension at a time, computing each hidden unit once.

        `transform(params [batch, P, 1], v_d [batch, 1]) -> (y_d [batch, 1],
        log_det [batch])` maps dimension `d` of `v` given the parameters this
        network outputs for it; `y_d` becomes input `d` of the network. Returns
        `(y [batch, D], log_det [batch])`: the `y` with `y_d = transform(
        params_d(y_<d), v_d)` for every `d` (the MAF forward, the IAF inverse).

        A hidden unit of degree `k` depends on inputs `1..k` only, so it is
        final once `y_k` is known. Step `d` computes the parameters of
        dimension `d` from the final units (degree < d), maps `v_d`, and then
        evaluates the units of degree `d`: every unit is computed exactly
        once, so the whole solve costs about one network pass (plus `D` small
        steps) instead of the `D` passes of re-running the network after each
        dimension. The values agree with `call` up to float summation order.
        The hidden values are kept transposed (`[units, batch]`), so each
        step reads and writes whole rows.
        """
        v = tf.convert_to_tensor(v, self.variable_dtype)
        context = None if context is None else shared_context(tf.convert_to_tensor(context), v)
        return solve_nonempty(lambda v, context: self._solve(transform, v, context), v, context)

    def _solve(self, transform, v, context):
        """`solve` for a batch of at least one row."""
        D, P = self.event_dim, self.params_per_dim
        C = self.context_dim or 0
        # The network computes in its compute dtype (float16 / bfloat16 under a mixed
        # policy); `v`, `y`, the parameters given to `transform` and the log-det keep
        # the dtype of `v` (the flow's).
        dtype, out = self.compute_dtype, self.variable_dtype
        batch = tf.shape(v)[0]
        masked = self._masked_kernels(dtype)
        n_hidden = len(self.hidden_units)
        # Per hidden layer: `[units + 1, fan_in (+1)]` weights, transposed, with a zero row
        # and column for a dummy unit that pads each degree's unit list to one length.
        rows, biases, groups = [], [], []
        for i, units in enumerate(self.hidden_units):
            w = tf.transpose(masked[i][:D] if i == 0 else masked[i])
            if i > 0:
                w = tf.pad(w, [[0, 0], [0, 1]])
            rows.append(tf.pad(w, [[0, 1], [0, 0]]))
            biases.append(tf.pad(tf.cast(self.biases[i], dtype), [[0, 1]])[:, None])
            degree = hidden_degrees(D, units, C)
            size = max(1, max(int(np.sum(degree == k)) for k in range(D + 1)))
            table = np.full((D + 1, size), units, np.int32)
            for k in range(D + 1):
                members = np.flatnonzero(degree == k)
                table[k, :len(members)] = members
            groups.append(tf.constant(table))
        if C:   # the context's part of the first layer, `[units + 1, batch]`
            from_context = tf.pad(tf.transpose(tf.matmul(tf.cast(context, dtype), masked[0][D:])),
                                  [[0, 1], [0, 0]])
        # Output rows in parameters-first order (row p * D + d), with the dummy column.
        w_out, b_out = self._params_first_output(masked[-1], tf.cast(self.biases[-1], dtype))
        w_out, b_out = tf.pad(tf.transpose(w_out), [[0, 0], [0, 1]]), b_out[:, None]
        v_t = tf.transpose(v)

        def finalize(k, y_t, hidden):
            """Evaluates the hidden units of degree `k` (all their inputs are final)."""
            hidden = list(hidden)
            below = tf.cast(y_t, dtype)
            for i in range(n_hidden):
                units = groups[i][k]
                pre = tf.matmul(tf.gather(rows[i], units), below) + tf.gather(biases[i], units)
                if i == 0 and C:
                    pre = pre + tf.gather(from_context, units)
                value = self.activation(pre)
                hidden[i] = tf.tensor_scatter_nd_update(hidden[i], units[:, None], value)
                below = hidden[i]
            return hidden

        y_t = tf.zeros([D, batch], out)
        hidden = [tf.zeros([u + 1, batch], dtype) for u in self.hidden_units]
        if C:
            hidden = finalize(0, y_t, hidden)      # units that see only the context

        def step(d, y_t, log_det, *hidden):
            out_rows = d + D * tf.range(P)
            params = tf.matmul(tf.gather(w_out, out_rows), hidden[-1]) + tf.gather(b_out, out_rows)
            y_d, ld = transform(tf.cast(tf.transpose(params), out)[:, :, None],
                                tf.gather(v_t, d)[:, None])
            y_t = tf.tensor_scatter_nd_update(y_t, [[d]], tf.transpose(y_d))
            hidden = finalize(d + 1, y_t, hidden)
            return (d + 1, y_t, log_det + ld, *hidden)

        _, y_t, log_det, *_ = tf.while_loop(
            lambda d, *unused: d < D, step,
            (tf.constant(0), y_t, tf.zeros([batch], out), *hidden), maximum_iterations=D)
        return tf.transpose(y_t), log_det

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (int(input_shape[-1]), self.params_per_dim)

    def get_config(self):
        config = super().get_config()
        config.update(params_per_dim=self.params_per_dim, hidden_units=list(self.hidden_units),
                      activation=self.activation_name, context_dim=self.context_dim,
                      zero_init=self.zero_init)
        return config
