"""Batches of any shape and of no rows: conditioners and bijectors of `[N, D]`
rows on inputs `[..., D]` (`any_batch`, `RowsBijector`), log-dets broadcast
to the batch, solves that take an empty batch."""

import weakref

import tensorflow as tf
import tensorflow_probability as tfp

__all__ = ["solve_nonempty", "any_batch", "batch_log_det", "RowsBijector"]


def solve_nonempty(solve, v, context=None):
    """`solve(v, context) -> (y, log_det)` for a batch `v` that may be empty: with
    one padding row when its size is unknown or 0, dropped after (`MADE.solve`'s
    row updates cannot scatter into an empty batch; TFP's ODE solver never
    returns from an empty state). A batch of known size > 0 is solved as it is."""
    if v.shape[0] is not None and v.shape[0] > 0:
        return solve(v, context)
    n = tf.shape(v)[0]
    pad = [[0, tf.maximum(1 - n, 0)], [0, 0]]
    y, log_det = solve(tf.pad(v, pad), None if context is None else tf.pad(context, pad))
    return y[:n], log_det[:n]


def any_batch(fn):
    """`fn(v, ...)`, a conditioner of rows `[N, d]`, for inputs `v` of any batch
    shape `[..., d]` (a TFP distribution's `sample()` gives `[d]`, its
    `sample([2, 3])` `[2, 3, d]`): flattened to rows, and the result's first
    axis back to `v`'s batch shape. Rows go through as they are."""
    def rows(v, *args, **kwargs):
        v = tf.convert_to_tensor(v)
        if v.shape.rank == 2:
            return fn(v, *args, **kwargs)
        out = fn(tf.reshape(v, [-1, v.shape[-1]]), *args, **kwargs)
        return tf.reshape(out, tf.concat([tf.shape(v)[:-1], tf.shape(out)[1:]], 0))
    return rows


def batch_log_det(log_det, x):
    """Broadcasts a log-det (scalar for constant-Jacobian maps) to shape `[batch]`."""
    return tf.broadcast_to(tf.cast(log_det, x.dtype), tf.shape(x)[:1])


class RowsBijector(tfp.bijectors.Bijector):
    """`inner` (a bijector of `[N, D]` rows: a layer's, or the chain of a flow's
    layers) on inputs of any batch shape `[..., D]`, flattened to rows and
    back: a TFP distribution's `sample()` is `[D]`, its `sample([2, 3])` `[2,
    3, D]`. With `no_inverse` (an exception), the inverse direction raises it.
    With `context_rows` (the rows of a conditional flow's context, other than
    1), inputs of another number of rows are refused by name.

    Each instance is its own in TFP's cache (which equal bijectors share), and
    hands `inner` a fresh tensor for each input: a bijector built after the
    weights changed never answers from a result of the old weights, and a
    layer's stock TFP bijectors, equal from one build to the next, are never
    asked for an input they cached.

    With `inner` a function of no arguments returning the bijector of rows
    (`dtype` its dtype), the bijector is built anew for each transform, from
    the weights as they are then: one held across training follows the
    weights, and one built before a `tf.GradientTape` gives gradients to every
    weight the function reads. `variables` (`tf.Variable`s: a flow's) are then
    its `variables` and `trainable_variables`, as TFP's optimisers ask for them.
    A log-det of a transform's input or output, while that output lives, uses
    the transform's build (`_paired`); of another tensor, a build of its own."""

    def __init__(self, inner, event_dim, no_inverse=None, name="flow", context_rows=None,
                 variables=(), dtype=None):
        parameters = dict(locals())
        built = isinstance(inner, tfp.bijectors.Bijector)
        if not (built or callable(inner)):
            raise TypeError("RowsBijector takes a TFP bijector or a function of no arguments "
                            f"returning one; received {inner!r}.")
        # `no_inverse`: the error a forward-only layer gives for the inverse direction
        self._make_inner, self._inner = (None, inner) if built else (inner, None)
        self.event_dim, self.no_inverse = event_dim, no_inverse
        self.context_rows = context_rows
        self._flow_variables = tuple(variables)
        # (weak reference to a tensor, its rows or None: itself, the bijector of rows
        # that took or gave them, weak reference to the output) for the last
        # transform's input and output: `_paired`
        self._rows_of = []
        super().__init__(forward_min_event_ndims=1, is_constant_jacobian=False,
                         dtype=inner.dtype if built else dtype,
                         parameters=parameters, name=name)

    @property
    def inner(self):
        """The bijector of rows: the one given, or a build of the weights as they
        are now."""
        return self._inner if self._make_inner is None else self._make_inner()

    @classmethod
    def _parameter_properties(cls, dtype):
        return dict()

    def _get_parameterization(self):
        # unequal to any other instance, so TFP's cache is this instance's own
        return id(self)

    def _new_rows(self, v):
        """`v` as rows `[N, D]` (a fresh tensor for rank 2, a reshape for others), and
        the bijector of rows that takes them: the one given, or a build of the
        weights as they are now (so a held view follows the weights, and gives
        gradients to every weight under a tape)."""
        rows = tf.identity(v) if v.shape.rank == 2 else tf.reshape(v, [-1, self.event_dim])
        if self.context_rows is not None and rows.shape[0] not in (None, self.context_rows):
            raise ValueError(
                f"This distribution's context has {self.context_rows} rows, one per input "
                f"row; received {rows.shape[0]} input rows (shape {v.shape}). Sample with "
                f"`sample({self.context_rows})` and pass [{self.context_rows}, "
                f"{self.event_dim}] inputs, or give a [1, C] context shared by all rows.")
        return rows, self.inner

    def _paired(self, v):
        """The rows and bijector of rows of the last transform whose input or output
        is `v`, while that output lives; else None.

        A log-det is taken of the rows and build that gave the transform: TFP
        caches results by the input and output tensors, and FFJORD's log-det reads
        the one solve that gave its transform (another tensor would be a second
        solve, as when a `TransformedDistribution` takes the log-det at the
        inverse's output). Only while the output lives, as TFP keeps its own
        entries: the same input given again later (after a weight change) is
        transformed anew. A transform is always taken anew.

        The input and output are held weakly: TFP's cache, process-wide, holds
        this bijector for as long as they live, so holding them here kept all
        three alive for good (every `flow.distribution` call leaked its
        tensors). Their rows are not the tensors TFP keys by, and are held."""
        for ref, rows, inner, output in self._rows_of:
            if ref() is v and output() is not None:
                return (v if rows is None else rows), inner
        return None

    def _map(self, direction, v):
        # TFP keeps an input's cached log-det after the output it was of is gone, and
        # asks for the transform again: dropped here, it is taken of this transform
        # (else a held view gave the old weights' log-det for an input given again)
        attributes = (self._cache.forward_attributes if direction == "forward"
                      else self._cache.inverse_attributes)
        attributes(v).clear()
        rows, inner = self._new_rows(v)
        out = getattr(inner, direction)(rows)
        result = out if v.shape.rank == 2 else tf.reshape(out, tf.shape(v))
        output = weakref.ref(result)
        self._rows_of = [(weakref.ref(v), rows, inner, output),
                         (output, None if result is out else out, inner, output)]
        return result

    def _log_det(self, direction, v):
        rows, inner = self._paired(v) or self._new_rows(v)
        log_det = getattr(inner, direction)(rows, event_ndims=1)
        log_det = tf.broadcast_to(log_det, tf.shape(rows)[:1])
        return log_det if v.shape.rank == 2 else tf.reshape(log_det, tf.shape(v)[:-1])

    def _forward(self, z):
        return self._map("forward", z)

    def _inverse(self, x):
        if self.no_inverse is not None:
            raise self.no_inverse
        return self._map("inverse", x)

    def _forward_log_det_jacobian(self, z):
        return self._log_det("forward_log_det_jacobian", z)

    def _inverse_log_det_jacobian(self, x):
        # a forward-only map's log-det at a live output of its forward is known (TFP's
        # cache gives its inverse there, as for `log_prob` of samples)
        if self.no_inverse is not None and self._paired(x) is None:
            raise self.no_inverse
        return self._log_det("inverse_log_det_jacobian", x)
