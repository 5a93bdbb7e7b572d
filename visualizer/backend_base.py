"""What both visualizer backends share: the `Backend` interface, padding a batch
to a few bucket sizes, and the base noise `Flow.sample` draws.

`backends` re-exports all of it; see there for the two kinds of model.
"""

import numpy as np
import tensorflow as tf

__all__ = ["Backend", "TraceUnavailable", "TRACE_SIGNATURES", "CHUNK", "bucket", "base_noise"]

TRACE_SIGNATURES = ("trace", "trace_inverse")


class TraceUnavailable(RuntimeError):
    """The model cannot report per-layer states (a SavedModel without trace signatures)."""


#: Largest batch sent to the flow at once (a 256x256 grid); bigger inputs go in chunks.
CHUNK = 65536


def bucket(n, smallest=64):
    """The padded batch size for `n` rows: the smallest `2^k * (1, 1.25, 1.5 or 1.75)` >= `n`.

    Quarter-octave steps waste at most 25% on padding (10,000 samples run as
    10,240) while a view still compiles only a few shapes.
    """
    if n <= smallest:
        return smallest
    octave = 1 << int(np.floor(np.log2(n)))
    return next(octave * q // 4 for q in (4, 5, 6, 7, 8) if octave * q // 4 >= n)


def _floats(x):
    """`x` as a float64 array if it is one (a float64 flow's numbers keep their
    precision), else as float32. The flow, or the signature, converts it to its own dtype."""
    x = np.asarray(x)
    return x if x.dtype == np.float64 else x.astype(np.float32)


def _padded(fn, x, chunk=CHUNK, rows=bucket):
    """Calls `fn` on `x` (`_floats`) in chunks of at most `chunk` rows, each padded to
    `rows(n)` rows, and joins every output (a tuple of arrays, batch axis first) back
    to `len(x)`."""
    x = _floats(x)
    outs = []
    for start in range(0, max(len(x), 1), chunk):
        part = x[start:start + chunk]
        n = len(part)
        pad = np.zeros((rows(n) - n, x.shape[1]), x.dtype)
        out = fn(np.concatenate([part, pad]) if len(pad) else part)
        outs.append(tuple(v[:n] for v in out))
    if len(outs) == 1:
        return outs[0]
    return tuple(np.concatenate(parts) for parts in zip(*outs))


def base_noise(n, event_dim, seed, df=None, dtype=np.float32):
    """Standard-normal noise `[n, D]` drawn as `Flow.sample` draws it (Philox, seed
    `[seed, 0]`, in the flow's `dtype`: float64 draws are other numbers than
    float32 ones); with `df` (`[D]`, a Student-t base's degrees of freedom) the
    Student-t draws `Flow.sample` makes of it.

    The numbers of `tf.random.stateless_normal(alg="philox")`, through the
    one-op kernel that `kerasflows.flow.philox_normal` uses, about 1 ms faster
    a call; the Student-t draws as `kerasflows.flow_sampling.student_t_noise`
    makes them (both written out here: a SavedModel opens without kerasflows).
    """
    dtype = tf.as_dtype(dtype)
    seed = tf.constant([int(seed), 0], tf.int32)
    eps = tf.raw_ops.StatelessRandomNormal(shape=[int(n), int(event_dim)], seed=seed,
                                           dtype=dtype)
    if df is not None:
        df = tf.constant(np.asarray(df, dtype.as_numpy_dtype))
        g = tf.random.stateless_gamma(tf.shape(eps), tf.random.experimental.stateless_fold_in(
            seed, 1), alpha=0.5 * df, dtype=dtype)
        eps = eps * tf.sqrt(0.5 * df / g)
    return eps.numpy()


class Backend:
    """The interface: `event_dim`, `context_dim`, `num_layers`, `layer_names`,
    `has_trace`, `invertible`, and `log_prob`, `sample`, `sample_and_log_prob`,
    `forward`, `inverse`, `trace`, `trace_inverse`, `base_params` (and `base_df`).

    A conditional flow (`context_dim` set) evaluates every call at one context
    `[C]`, set with `set_context` (zeros when opened).

    `trace(z)` returns `(states [L+1, N, D], log_dets [L, N])` (per-layer
    forward log|det|); `trace_inverse(x)` returns the states from `x` back
    to `z` and the per-step inverse log|det|. A flow that is not
    `invertible` (forward-only layers such as `Planar`) has only `sample`,
    `sample_and_log_prob`, `forward` and `trace`.
    """

    kind = None
    event_dim = None
    context_dim = None
    num_layers = None
    layer_names = ()
    has_trace = True
    invertible = True
    context = None
    #: A Student-t base's degrees of freedom `[D]`, or None for a Gaussian base.
    base_df = None

    def give_back(self):
        """Undoes what opening this backend did to the one open before it, for an open
        that fails after it (`opening.load`): nothing, unless a subclass took that
        one's flow over (`backends.KerasBackend`)."""

    def set_context(self, context):
        """Sets the context `[C]` every later call of a conditional flow uses (one
        context for the whole batch); a new context drops what `memo` kept."""
        if self.context_dim is None:
            if context is not None and len(np.atleast_1d(context)):
                raise ValueError("this flow is not conditional; it takes no context.")
            return
        c = np.asarray(context, np.float32).reshape(-1)
        if c.shape != (self.context_dim,) or not np.all(np.isfinite(c)):
            values = "value" if self.context_dim == 1 else "values"
            raise ValueError(f"expected a context of {self.context_dim} finite {values}; "
                             f"received {np.asarray(context).tolist()}.")
        if self.context is None or not np.array_equal(c, self.context):
            self.context = c
            self.__dict__.pop("_memo", None)

    def sample_at(self, context, n, seed, temperature=1.0):
        """`sample(n, seed, temperature)` at another `context` `[C]`; the backend's own
        context (and what `memo` kept for it) is left as it was."""
        kept = self.context
        self.context = np.asarray(context, np.float32).reshape(-1)
        try:
            return self.sample(n, seed, temperature)
        finally:
            self.context = kept

    def _context_rows(self, n):
        """The context tiled to `n` rows, or None for an unconditional flow."""
        if self.context_dim is None:
            return None
        return np.broadcast_to(self.context, (n, self.context_dim)).astype(np.float32)

    def memo(self, key, make):
        """`make()`, computed once per backend and `key` (e.g. a fixed sample cloud)."""
        cache = self.__dict__.setdefault("_memo", {})
        if key not in cache:
            cache[key] = make()
        return cache[key]

    def dtype(self):
        """The dtype the flow computes in (that of its `forward`'s output): float64 for
        a float64 flow, float32 for a float32 or mixed-precision one."""
        if "_dtype" not in self.__dict__:
            self._dtype = self.forward(np.zeros((1, self.event_dim), np.float32))[0].dtype
        return self._dtype

    def sample(self, n, seed, temperature=1.0):
        """`n` samples as `Flow.sample` draws them: the base noise of `base_noise` in the
        flow's `dtype`, scaled by `temperature`, sent forward."""
        dtype = self.dtype()
        loc, scale = (np.asarray(p, dtype) for p in self.base_params())
        eps = base_noise(n, self.event_dim, seed, self.base_df, dtype)
        return self.forward(loc + dtype.type(temperature) * scale * eps)[0]

    def check_points(self, x, what="x"):
        """`x` as `[N, event_dim]` floats (`_floats`), or a ValueError naming its shape."""
        x = _floats(x)
        if x.ndim != 2 or x.shape[1] != self.event_dim:
            raise ValueError(f"expected {what} of shape (N, {self.event_dim}); "
                             f"received shape {x.shape}.")
        return x


def _layers_first(states, log_dets):
    """`[N, L+1, D]`, `[N, L]` (batch first, as `_padded` needs) to `[L+1, N, D]`, `[L, N]`."""
    return np.swapaxes(states, 0, 1), np.swapaxes(log_dets, 0, 1)
