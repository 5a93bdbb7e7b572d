"""A flow exported as a SavedModel, driven through its signatures only.

Uses nothing but the signatures (`serving_default`, `sample`, `forward`,
`inverse`, `trace`, `trace_inverse`) and, when it is there, the layer names
in `assets.extra/kerasflows.json` (`kerasflows.export`), so it works where
kerasflows is not installed and with a flow exported by any program that
follows the kerasflows signature names. Each input goes in the dtype its
signature declares (float64 for a float64 flow's export, float32 for a
float32 or mixed-precision one); the outputs come back in the signature's.
"""

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from visualizer.backend_base import (TRACE_SIGNATURES, Backend, TraceUnavailable, _layers_first,
                                     _padded)

__all__ = ["SavedModelBackend", "export_metadata"]


class SavedModelBackend(Backend):
    """A flow exported as a SavedModel, driven through its signatures only."""

    kind = "savedmodel"

    def __init__(self, path):
        try:
            self.module = tf.saved_model.load(str(path))
        except Exception as e:      # TensorFlow raises many types for damaged files
            reason = (str(e).strip().splitlines() or [""])[0]
            raise ValueError(f"{path}: cannot load the SavedModel (damaged or incomplete: "
                             f"{type(e).__name__}: {reason})"[:600]) from None
        self.signatures = dict(self.module.signatures)
        if "serving_default" not in self.signatures:
            raise ValueError(f"{path} has no serving_default signature; found "
                             f"{sorted(self.signatures)}.")
        #: Each signature's inputs and the dtype it declares for each, e.g. {"x": tf.float64}.
        self.input_dtypes = {name: {arg: spec.dtype for arg, spec in
                                    signature.structured_input_signature[1].items()}
                             for name, signature in self.signatures.items()}
        inputs = self.signatures["serving_default"].structured_input_signature[1]
        if "x" not in inputs:
            raise ValueError(f"{path}: serving_default takes {sorted(inputs)}; a flow exported "
                             "by kerasflows (kerasflows export, Flow.export) "
                             "takes 'x'. Is this SavedModel a kerasflows export?")
        outputs = self.signatures["serving_default"].structured_outputs
        if "forward" not in self.signatures or "log_prob" not in outputs:
            # (every view draws through forward; a model taking 'x' for other outputs
            # was called a flow export lacking a signature, without its path)
            raise ValueError(f"{path}: not a flow exported by kerasflows (kerasflows export, "
                             "Flow.export), whose serving_default gives 'log_prob' and which "
                             "has a 'forward' signature; this one's serving_default gives "
                             f"{sorted(outputs)} and its signatures are "
                             f"{sorted(self.signatures)}. Is this SavedModel a kerasflows "
                             "export?")
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
        self.layer_names = _layer_names(path, self.num_layers or 0)
        self._base = None
        self.base_df = _base_df(path, self.event_dim)

    def _call(self, name, **kwargs):
        """Signature `name` on the batches `kwargs` (and the context, tiled to their rows)."""
        if name not in self.signatures:
            raise TraceUnavailable(f"this SavedModel has no '{name}' signature "
                                   f"(it has {', '.join(sorted(self.signatures))}).")
        return self._run(name, kwargs, rows=len(next(iter(kwargs.values()))))

    def _run(self, name, values, rows):
        """Signature `name` on `values` (with a conditional flow's context as `rows`
        rows), each sent in the dtype the signature declares for it; its outputs as
        NumPy arrays, in the dtypes it gives them."""
        values = dict(values)
        if self.context_dim is not None:
            values["context"] = self._context_rows(rows)
        declared = self.input_dtypes[name]
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise ValueError(f"this SavedModel's '{name}' signature takes {sorted(declared)}; "
                             f"expected it to take {unknown} as well.")
        args = {k: tf.constant(np.asarray(v, declared[k].as_numpy_dtype))
                for k, v in values.items()}
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
        """Mean and scale of the base: for a Gaussian one, read off the signatures;
        a Student-t base (`base_df`, from `export_metadata`) is standard.

        `log p0(z) = log p(forward(z)) + log|det dx/dz|` is a quadratic in each
        coordinate of a Gaussian base; its values at 0 and at +-e_d give `loc_d`
        and `scale_d`. In the flow's dtype (`dtype()`: float64 for a float64 flow).
        """
        dtype = self.dtype()
        if self._base is None and self.base_df is not None:
            D = self.event_dim
            self._base = (np.zeros(D, dtype), np.ones(D, dtype))
        if self._base is None:
            D = self.event_dim
            z = np.concatenate([np.zeros((1, D)), np.eye(D), -np.eye(D)]).astype(dtype)
            x, log_det = self.forward(z)
            f = self.log_prob(x).astype(np.float64) + log_det
            a = (f[1:D + 1] + f[D + 1:] - 2 * f[0]) / 2      # -1 / (2 scale^2)
            b = (f[1:D + 1] - f[D + 1:]) / 2                  # loc / scale^2
            var = -1.0 / (2 * a)
            self._base = ((b * var).astype(dtype), np.sqrt(var).astype(dtype))
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
        """Signature `name` on the whole numbers `kwargs` (`n`, `seed`); the context
        goes as one row per sample (what every export takes)."""
        if name not in self.signatures:
            raise TraceUnavailable(f"this SavedModel has no '{name}' signature.")
        return self._run(name, {k: int(v) for k, v in kwargs.items()}, rows=int(kwargs["n"]))

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


def export_metadata(path):
    """The export's `assets.extra/kerasflows.json` in the SavedModel directory `path`
    (what `kerasflows.export` writes: layers, columns, ...), or {} where there is
    none (a SavedModel from elsewhere, or from before the file) or it is no JSON
    object."""
    try:
        value = json.loads((Path(path) / "assets.extra" / "kerasflows.json").read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _base_df(path, event_dim):
    """A Student-t base's degrees of freedom `[D]` from `export_metadata` (`base`,
    `base_df`), or None (a Gaussian base, or no such record)."""
    meta = export_metadata(path)
    if meta.get("base") != "student_t":
        return None
    df = np.asarray(meta.get("base_df"), np.float32)
    if df.shape != (event_dim,) or not np.all(df > 0):
        raise ValueError(f"{path}: its kerasflows.json names a Student-t base but gives "
                         f"base_df={meta.get('base_df')!r}; expected {event_dim} positive "
                         "numbers.")
    return df


def _layer_names(path, count):
    """The layers' names from `export_metadata` (`layers`, e.g. "SplineCoupling
    (spline_0)") when it lists `count` of them, else "step 0", "step 1", ..."""
    names = export_metadata(path).get("layers")
    if isinstance(names, list) and len(names) == count and all(isinstance(n, str) for n in names):
        return tuple(names)
    return tuple(f"step {i}" for i in range(count))
