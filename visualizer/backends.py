"""Two ways to run a flow, behind one interface: a `.keras` file or a SavedModel.

This module, `opening` and `compute` are the only visualizer code that
touches TensorFlow, and none imports Qt. Every method takes and returns NumPy
arrays. `SavedModelBackend` uses nothing but the SavedModel's signatures
(`serving_default`, `sample`, `forward`, `inverse`, `trace`,
`trace_inverse`), so it works in a process where kerasflows is not
installed and with a flow exported by any program that follows the
kerasflows signature names.

Inputs are padded to a few bucket sizes (powers of two) so each traced (or
XLA-compiled) function sees only a handful of shapes: a `.keras` flow runs
with `Flow.eval_mode = "xla"` by default, and a fixed heatmap resolution or
sample count then reuses one compiled function. A 2-D coupling flow is
first turned into its `kerasflows.tabulate` copy (conditioners as exact
lookup tables, run in graph mode with the tables compiled by XLA).
"""

import logging
import zipfile

import numpy as np
import tensorflow as tf

from visualizer import compile_cache

# Before anything is traced: XLA's compile cache can then find this launch's functions
# under the names the last launch gave them (`compile_cache` notes).
compile_cache.name_functions_stably()

# TensorFlow counts traces per Python function body, so the tables of a tabulated
# flow (one small compiled function per layer, each traced once per shape) read to
# it as "excessive retracing" and it logs a long warning; the app has no use for it.
logging.getLogger("tensorflow").setLevel(logging.ERROR)

__all__ = ["Backend", "KerasBackend", "SavedModelBackend", "TraceUnavailable", "open_backend",
           "base_noise"]

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


def _padded(fn, x, chunk=CHUNK, rows=bucket):
    """Calls `fn` on `x` in chunks of at most `chunk` rows, each padded to `rows(n)`
    rows, and joins every output (a tuple of arrays, batch axis first) back to `len(x)`."""
    x = np.asarray(x, np.float32)
    outs = []
    for start in range(0, max(len(x), 1), chunk):
        part = x[start:start + chunk]
        n = len(part)
        pad = np.zeros((rows(n) - n, x.shape[1]), np.float32)
        out = fn(np.concatenate([part, pad]) if len(pad) else part)
        outs.append(tuple(v[:n] for v in out))
    if len(outs) == 1:
        return outs[0]
    return tuple(np.concatenate(parts) for parts in zip(*outs))


def base_noise(n, event_dim, seed):
    """Standard-normal noise `[n, D]` drawn as `Flow.sample` draws it (Philox, seed `[seed, 0]`).

    The numbers of `tf.random.stateless_normal(alg="philox")`, through the
    one-op kernel that `kerasflows.flow.philox_normal` uses (written out here:
    a SavedModel opens without kerasflows), about 1 ms faster a call.
    """
    return tf.raw_ops.StatelessRandomNormal(shape=[int(n), int(event_dim)],
                                            seed=tf.constant([int(seed), 0], tf.int32),
                                            dtype=tf.float32).numpy()


class Backend:
    """The interface: `event_dim`, `context_dim`, `num_layers`, `layer_names`,
    `has_trace`, `invertible`, and `log_prob`, `sample`, `sample_and_log_prob`,
    `forward`, `inverse`, `trace`, `trace_inverse`, `base_params`.

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

    def sample(self, n, seed, temperature=1.0):
        """`n` samples: the base noise of `base_noise`, scaled by `temperature`, sent forward."""
        loc, scale = self.base_params()
        eps = base_noise(n, self.event_dim, seed)
        return self.forward(loc + float(temperature) * scale * eps)[0]

    def check_points(self, x, what="x"):
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != self.event_dim:
            raise ValueError(f"expected {what} of shape (N, {self.event_dim}); "
                             f"received shape {x.shape}.")
        return x


def _not_an_archive(path, why):
    return (f"{path} exists but is not a readable .keras archive (a zip file): it is "
            f"truncated or corrupt ({why}).")


class KerasBackend(Backend):
    """A kerasflows `Flow` loaded from a `.keras` file (needs kerasflows)."""

    kind = "keras"

    def __init__(self, path, eval_mode="xla"):
        import keras
        import kerasflows
        from kerasflows.inference import tabulate
        with open(path, "rb") as f:           # a missing or unreadable file says so itself
            is_zip = zipfile.is_zipfile(f)
        if not is_zip:                         # Keras would say "File not found"
            raise ValueError(_not_an_archive(path, "no zip directory at its end"))
        try:
            flow = keras.models.load_model(path)
        except zipfile.BadZipFile as e:
            raise ValueError(_not_an_archive(path, e)) from None
        if not isinstance(flow, kerasflows.Flow):
            raise ValueError(f"{path} holds a {type(flow).__name__}, not a kerasflows Flow.")
        flow.eval_mode = eval_mode
        # 2-D coupling flows evaluate their conditioners as exact lookup tables
        # (`kerasflows.tabulate`): 2.5-3x faster heatmaps, same numbers up to rounding.
        self.flow, self.tabulated = tabulate(flow)
        self.event_dim = flow.event_dim
        self.context_dim = flow.context_dim
        if self.context_dim is not None:
            self.context = np.zeros(self.context_dim, np.float32)
        self.num_layers = len(flow.flow_layers)
        self.layer_names = tuple(f"{type(l).__name__} ({l.name})" for l in flow.flow_layers)
        self.forward_only_layers = tuple(sorted({type(l).__name__ for l in flow.flow_layers
                                                  if l.forward_only}))
        self.invertible = not self.forward_only_layers

    def base_params(self):
        """Mean and scale of the base distribution, `[D]` each."""
        loc, scale = self.flow._base_params()
        return np.asarray(loc, np.float32), np.asarray(scale, np.float32)

    def log_prob(self, x):
        x = self.check_points(x)
        return _padded(lambda v: (self.flow.log_prob(
            v, context=self._context_rows(len(v))).numpy(),), x)[0]

    def sample_and_log_prob(self, n, seed):
        """The flow's own `sample_and_log_prob` (forward direction only)."""
        x, log_p = self.flow.sample_and_log_prob(int(n), seed=int(seed),
                                                 context=self._context_rows(1))
        return x.numpy(), log_p.numpy()

    def forward(self, z):
        z = self.check_points(z, "z")
        return _padded(lambda v: tuple(t.numpy() for t in self.flow.forward_and_log_det(
            v, context=self._context_rows(len(v)))), z)

    def inverse(self, x):
        x = self.check_points(x)
        return _padded(lambda v: tuple(t.numpy() for t in self.flow.inverse_and_log_det(
            v, context=self._context_rows(len(v)))), x)

    def _trace(self, method, x):
        def run(v):
            states, log_dets = method(v, context=self._context_rows(len(v)),
                                      return_log_dets=True)
            return (np.stack([s.numpy() for s in states], 1),
                    np.stack([d.numpy() for d in log_dets], 1))
        return _layers_first(*_padded(run, x))

    def trace(self, z):
        return self._trace(self.flow.trace, self.check_points(z, "z"))

    def trace_inverse(self, x):
        return self._trace(self.flow.trace_inverse, self.check_points(x))


def _layers_first(states, log_dets):
    """`[N, L+1, D]`, `[N, L]` (batch first, as `_padded` needs) to `[L+1, N, D]`, `[L, N]`."""
    return np.swapaxes(states, 0, 1), np.swapaxes(log_dets, 0, 1)


class SavedModelBackend(Backend):
    """A flow exported as a SavedModel, driven through its signatures only."""

    kind = "savedmodel"

    def __init__(self, path):
        self.module = tf.saved_model.load(str(path))
        self.signatures = dict(self.module.signatures)
        if "serving_default" not in self.signatures:
            raise ValueError(f"{path} has no serving_default signature; found "
                             f"{sorted(self.signatures)}.")
        inputs = self.signatures["serving_default"].structured_input_signature[1]
        if "x" not in inputs:
            raise ValueError(f"{path}: serving_default takes {sorted(inputs)}; expected 'x'.")
        self.event_dim = int(inputs["x"].shape[-1])
        if "context" in inputs:
            self.context_dim = int(inputs["context"].shape[-1])
            self.context = np.zeros(self.context_dim, np.float32)
        self.has_trace = all(s in self.signatures for s in TRACE_SIGNATURES)
        self.invertible = "inverse" in self.signatures or self.has_trace
        self.num_layers = None
        if self.has_trace:
            self.num_layers = int(self._call("trace", z=np.zeros((1, self.event_dim)))
                                  ["log_dets"].shape[0])
        self.layer_names = tuple(f"step {i}" for i in range(self.num_layers or 0))
        self._base = None

    def _call(self, name, **kwargs):
        if name not in self.signatures:
            raise TraceUnavailable(f"this SavedModel has no '{name}' signature "
                                   f"(it has {', '.join(sorted(self.signatures))}).")
        if self.context_dim is not None:
            kwargs["context"] = self._context_rows(len(next(iter(kwargs.values()))))
        args = {k: tf.constant(np.asarray(v, np.float32)) for k, v in kwargs.items()}
        return {k: v.numpy() for k, v in self.signatures[name](**args).items()}

    def log_prob(self, x):
        x = self.check_points(x)
        return _padded(lambda v: (self._call("serving_default", x=v)["log_prob"],), x)[0]

    def forward(self, z):
        z = self.check_points(z, "z")
        return _padded(lambda v: _pair(self._call("forward", z=v), "x"), z)

    def inverse(self, x):
        x = self.check_points(x)
        if "inverse" not in self.signatures:
            states, log_dets = self.trace_inverse(x)
            return states[:, -1], log_dets.sum(0)
        return _padded(lambda v: _pair(self._call("inverse", x=v), "z"), x)

    def base_params(self):
        """Mean and scale of the (diagonal Gaussian) base, read off the signatures.

        `log p0(z) = log p(forward(z)) + log|det dx/dz|` is a quadratic in each
        coordinate; its values at 0 and at +-e_d give `loc_d` and `scale_d`.
        """
        if self._base is None:
            D = self.event_dim
            z = np.concatenate([np.zeros((1, D)), np.eye(D), -np.eye(D)]).astype(np.float32)
            x, log_det = self.forward(z)
            f = self.log_prob(x).astype(np.float64) + log_det
            a = (f[1:D + 1] + f[D + 1:] - 2 * f[0]) / 2      # -1 / (2 scale^2)
            b = (f[1:D + 1] - f[D + 1:]) / 2                  # loc / scale^2
            var = -1.0 / (2 * a)
            self._base = ((b * var).astype(np.float32), np.sqrt(var).astype(np.float32))
        return self._base

    def sample(self, n, seed, temperature=1.0):
        if temperature == 1.0 and "sample" in self.signatures:
            return self.sample_and_log_prob(n, seed)[0]
        return super().sample(n, seed, temperature)

    def sample_and_log_prob(self, n, seed):
        """The `sample` signature's samples and their log p."""
        out = self._call_ints("sample", n=n, seed=seed)
        return out["samples"], out["log_prob"]

    def _call_ints(self, name, **kwargs):
        if name not in self.signatures:
            raise TraceUnavailable(f"this SavedModel has no '{name}' signature.")
        args = {k: tf.constant(int(v), tf.int32) for k, v in kwargs.items()}
        if self.context_dim is not None:    # one row per sample (what every export takes)
            args["context"] = tf.constant(self._context_rows(int(kwargs["n"])))
        return {k: v.numpy() for k, v in self.signatures[name](**args).items()}

    def _trace(self, name, arg, x):
        if not self.has_trace:
            raise TraceUnavailable("this SavedModel has no trace/trace_inverse signatures, so "
                                   "per-layer states are unavailable.")
        def run(v):
            out = self._call(name, **{arg: v})
            return np.swapaxes(out["states"], 0, 1), np.swapaxes(out["log_dets"], 0, 1)
        return _layers_first(*_padded(run, x))

    def trace(self, z):
        return self._trace("trace", "z", self.check_points(z, "z"))

    def trace_inverse(self, x):
        return self._trace("trace_inverse", "x", self.check_points(x))


def _pair(out, name):
    return out[name], out["log_det"]


def open_backend(kind, path, eval_mode="xla"):
    """Loads `path` as a `"keras"` (run in `eval_mode`) or `"savedmodel"` backend."""
    if kind == "keras":
        return KerasBackend(path, eval_mode)
    if kind == "savedmodel":
        return SavedModelBackend(path)
    raise ValueError(f"unknown model kind {kind!r}; expected 'keras' or 'savedmodel'.")
