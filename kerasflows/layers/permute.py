"""`Permute`: a fixed reordering of the dimensions (log-det 0).

Placed between coupling or autoregressive layers so that every dimension is
eventually transformed and conditions the others (Dinh et al. 2017;
Papamakarios et al. 2017). `bijector()` is TFP's `tfb.Permute`; the layer's
own forward and inverse compute the same map directly: a reversal as a
reverse op, and an order made of a few strided runs (such as the even
dimensions then the odd ones, the checkerboard of the coupling recipes) or
its inverse (an interleave) as slices, which XLA handles far better than a
gather.
"""

import operator

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from kerasflows.layers.base import FlowLayer, batch_log_det, check_positive_int

tfb = tfp.bijectors

__all__ = ["Permute", "ORDERS"]

ORDERS = ("reverse", "random")

#: A reordering made of at most this many strided slices is computed by
#: slicing (`_pieces`); more, and it is a gather.
MAX_PIECES = 4


def _runs(p):
    """`p` cut into maximal runs of a constant positive step: `[(first, length, step)]`."""
    runs, i = [], 0
    while i < len(p):
        j = i + 1
        step = int(p[j] - p[i]) if j < len(p) and p[j] > p[i] else 1
        while j < len(p) and p[j] - p[j - 1] == step:
            j += 1
        runs.append((int(p[i]), j - i, step))
        i = j
    return runs


def _pieces(p):
    """How to compute `v[..., p]` with slices, or None (then a gather).

    `("concat", runs)`: `p` is at most `MAX_PIECES` strided runs (the even
    dimensions, then the odd ones: two), so `v[..., p]` is the concatenation
    of those strided slices. `("interleave", lengths)`: `p`'s inverse is
    such runs, the r-th of the k starting at r with step k and the lengths
    not increasing (the odd dimensions interleaved with the even ones), so
    `v[..., p]` stacks k consecutive blocks of `v` (of those lengths, the
    shorter ones padded with a zero) along a new last axis and flattens them.
    """
    runs = _runs(p)
    if len(runs) <= MAX_PIECES:
        return "concat", runs
    inverse = _runs(np.argsort(p))
    k, lengths = len(inverse), [n for _, n, _ in inverse]
    if (k <= MAX_PIECES and all(first == r for r, (first, _, _) in enumerate(inverse))
            and all(step == k or n == 1 for _, n, step in inverse)
            and lengths == sorted(lengths, reverse=True) and lengths[0] - lengths[-1] <= 1):
        return "interleave", lengths
    return None


def _sliced(v, how):
    """`v[..., p]` for `how = _pieces(p)`."""
    kind, parts = how
    if kind == "concat":
        return tf.concat([v[..., first:first + step * (n - 1) + 1:step]
                          for first, n, step in parts], axis=-1)
    longest, blocks, start = parts[0], [], 0
    for n in parts:
        block = v[..., start:start + n]
        start += n
        if n < longest:
            pad = [[0, 0]] * (v.shape.rank - 1) + [[0, longest - n]]
            block = tf.pad(block, pad)
        blocks.append(block)
    flat = tf.reshape(tf.stack(blocks, axis=-1),
                      tf.concat([tf.shape(v)[:-1], [longest * len(parts)]], 0))
    return flat[..., :start]


def _check_order(order):
    """Returns `order` as a name from ORDERS or a tuple of ints, or raises ValueError."""
    if isinstance(order, str):
        if order not in ORDERS:
            raise ValueError(f"`order` must be one of {ORDERS} or a list of ints. "
                             f"Received: order={order!r}")
        return order
    try:
        if any(isinstance(i, (bool, np.bool_)) for i in order):
            raise TypeError     # (True, False) was taken as the order (1, 0)
        ints = tuple(operator.index(i) for i in order)
    except TypeError:
        raise ValueError(f"`order` must be one of {ORDERS} or a list of ints. "
                         f"Received: order={order!r}") from None
    if sorted(ints) != list(range(len(ints))):
        raise ValueError("`order` must be a permutation of range(len(order)). "
                         f"Received: order={list(ints)}")
    return ints


def _draw_seed():
    """A seed for a `"random"` order, from NumPy's global generator (which
    `keras.utils.set_random_seed` seeds)."""
    return int(np.random.randint(0, 2 ** 31 - 1))


@keras.saving.register_keras_serializable(package="kerasflows")
class Permute(FlowLayer):
    """Reorders the dimensions: forward `x[..., i] = z[..., permutation[i]]`.

    The permutation is fixed when the layer is built and is rebuilt
    identically from the config, so it survives saving and loading.

    Example:

    ```python
    Permute()                       # reverse the order
    Permute("random", seed=3)       # a seeded random permutation
    Permute("random")               # a seed drawn when the layer is made
    Permute([1, 2, 0])              # an explicit one, for event_dim=3
    ```

    Args:
        order: `"reverse"`, `"random"` (drawn from
            `numpy.random.default_rng(seed).permutation(event_dim)`), or an
            explicit permutation of `range(event_dim)`.
        seed: integer >= 0 seeding the `"random"` order; None (default) draws
            one from NumPy's global generator when the layer is made (so
            `keras.utils.set_random_seed` repeats it, and each layer gets its
            own order), drawing again at build until the order is not the
            identity (for `event_dim >= 2`: in 2-D, the reversal). The seed
            used is in the config, so a saved layer keeps its order. An
            explicit seed is taken as it is, whatever order it gives. The
            order is no weight: weights alone (`set_weights`, `load_weights`,
            a `ModelCheckpoint(save_weights_only=True)` file) fit a flow
            rebuilt from code only when its unseeded orders were drawn again
            alike (`keras.utils.set_random_seed` first, or a `seed`);
            otherwise they give another density, without an error.
        **kwargs: passed to `FlowLayer`; the layer ignores any context.

    Raises:
        ValueError: for an unknown order name, a list that is not a
            permutation, a negative seed, or (at build) a list whose length
            differs from the event dimension.
    """

    eval_in_blocks = True

    def __init__(self, order="reverse", seed=None, **kwargs):
        super().__init__(**kwargs)
        self.order = _check_order(order)
        # a default seed of 0 gave every unseeded "random" layer one order, in 2-D
        # the identity: such a flow never transformed its first coordinate
        self._drawn_seed = seed is None and self.order == "random"
        self.seed = (_draw_seed() if self._drawn_seed else
                     check_positive_int("seed", seed, minimum=0, allow_none=True))

    def build_flow(self, event_dim):
        if self.order == "reverse":
            permutation = np.arange(event_dim)[::-1]
        elif self.order == "random":
            permutation = np.random.default_rng(self.seed).permutation(event_dim)
            while (self._drawn_seed and event_dim > 1
                   and np.array_equal(permutation, np.arange(event_dim))):
                self.seed = _draw_seed()
                permutation = np.random.default_rng(self.seed).permutation(event_dim)
        elif len(self.order) != event_dim:
            raise ValueError(f"Permute: `order` must be a permutation of range({event_dim}) "
                             f"for event_dim={event_dim}. Received: order={list(self.order)}")
        else:
            permutation = np.asarray(self.order)
        self.permutation = np.asarray(permutation, dtype=np.int32)
        self._reverses = bool(np.array_equal(self.permutation, np.arange(event_dim)[::-1]))
        # as slices, forward and inverse (None: a gather)
        self._slicing = None if self._reverses else (
            _pieces(self.permutation), _pieces(np.argsort(self.permutation)))

    def bijector(self, context=None):
        return tfb.Permute(self.permutation)

    def _reorder(self, v, context, inverse, training):
        """`bijector().forward` (or `.inverse`) of `v` and a zero log-det `[batch]`.

        Outside training a reversal is XLA's reverse op: a gather along the
        last axis, fused with the elementwise map that produced its input,
        became a strided column-by-column loop (digits, 65,536 x 64 values:
        about 30 ms per layer; RealNVP log_prob 1.9x faster with the
        reverse). In a training step the reversal's gather stays: there the
        reverse, fused into an autoregressive spline's gradient, made the
        step about 4x slower (2-D moons, XLA), while the gather costs nothing
        there. An order of a few strided runs, or the inverse of one (see
        `_pieces`), is sliced, in training too: XLA wrote the checkerboard
        gather at the data end of a 64-D RealNVP in the transposed layout,
        with the last coupling fused in, and copied it back (1.3 + 0.35 ms
        of a 10^4-sample call); sliced, RealNVP's 64-D training step took
        about 14% less time (`benchmarks/permute_ab.py`). The reordering
        itself is exact either way; XLA may fuse, and so round, the
        operations around it differently (NICE's losses, not RealNVP's).
        """
        v, _ = self.check_inputs(v, context)
        log_det = batch_log_det(0.0, v)
        if self._reverses:
            if not training:
                return tf.reverse(v, [-1]), log_det
        elif self._slicing[inverse] is not None:
            return _sliced(v, self._slicing[inverse]), log_det
        permutation = np.argsort(self.permutation) if inverse else self.permutation
        return tf.gather(v, permutation, axis=-1), log_det

    def forward_and_log_det(self, z, context=None, training=False):
        return self._reorder(z, context, inverse=False, training=training)

    def inverse_and_log_det(self, x, context=None, training=False):
        return self._reorder(x, context, inverse=True, training=training)

    def get_config(self):
        order = self.order if isinstance(self.order, str) else list(self.order)
        return {**super().get_config(), "order": order, "seed": self.seed}
