"""Two ways to run a flow, behind one interface: a `.keras` file or a SavedModel.

This module (with `backend_base` and `savedmodel_backend`), `opening` and
`compute` are the only visualizer code that touches TensorFlow, and none
imports Qt. Every method takes and returns NumPy arrays.
`SavedModelBackend` uses nothing but the SavedModel's signatures
(`serving_default`, `sample`, `forward`, `inverse`, `trace`,
`trace_inverse`) and the layer names its export wrote, if any, so it works
in a process where kerasflows is not installed and with a flow exported by
any program that follows the kerasflows signature names.

`Backend`, the padding and the base noise live in `backend_base`, the
SavedModel side in `savedmodel_backend`; this module re-exports both.

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

from visualizer import compile_cache
from visualizer.backend_base import (CHUNK, TRACE_SIGNATURES, Backend, TraceUnavailable,
                                     _layers_first, _padded, base_noise, bucket)
from visualizer.savedmodel_backend import SavedModelBackend

# Before anything is traced: XLA's compile cache can then find this launch's functions
# under the names the last launch gave them (`compile_cache` notes).
compile_cache.name_functions_stably()

# TensorFlow counts traces per Python function body, so the tables of a tabulated
# flow (one small compiled function per layer, each traced once per shape) read to
# it as "excessive retracing" and it logs a long warning; the app has no use for it.
logging.getLogger("tensorflow").setLevel(logging.ERROR)

__all__ = ["Backend", "KerasBackend", "SavedModelBackend", "TraceUnavailable", "open_backend",
           "base_noise", "bucket", "CHUNK", "TRACE_SIGNATURES"]



def _not_an_archive(path, why):
    return (f"{path} exists but is not a readable .keras archive (a zip file): it is "
            f"truncated or corrupt ({why}).")


class KerasBackend(Backend):
    """A kerasflows `Flow` loaded from a `.keras` file (needs kerasflows)."""

    kind = "keras"

    def __init__(self, path, eval_mode="xla", previous=None):
        """`previous`: the backend open before (a reload of `--follow`, say). When it
        is an untabulated flow of the same configuration in the same `eval_mode`,
        its flow takes the file's weights and is kept: its compiled code reads the
        variables, so nothing is traced or compiled again (TensorFlow never frees
        an XLA executable: each new flow's code cost moons4d ~60 MB and ~2.5 s a
        reload). `give_back()` returns the weights it had (an open that fails later)."""
        import keras
        import kerasflows
        from kerasflows.inference import tabulate
        from kerasflows.loading import first_reason
        try:                                   # a missing or unreadable file says so itself
            with zipfile.ZipFile(path) as archive:
                members = set(archive.namelist())
        except zipfile.BadZipFile as e:        # Keras would say "File not found"
            raise ValueError(_not_an_archive(path, e)) from None
        if "config.json" not in members:       # Keras: KeyError "no item named ..."
            raise ValueError(f"{path} is a zip file but not a Keras model archive: it holds "
                             f"no config.json ({len(members)} other members).")
        if not members & {"model.weights.h5", "model.weights.npz"}:
            raise ValueError(f"{path} is a Keras model archive without its weights: it holds "
                             "no model.weights.h5.")
        try:
            flow = keras.models.load_model(path)
        except zipfile.BadZipFile as e:
            raise ValueError(_not_an_archive(path, e)) from None
        except Exception as e:    # Keras and h5py raise many types for damaged content
            raise ValueError(f"{path}: cannot load the model ({type(e).__name__}: "
                             f"{first_reason(str(e))})"[:600]) from None
        if not isinstance(flow, kerasflows.Flow):
            raise ValueError(f"{path} holds a {type(flow).__name__}, not a kerasflows Flow.")
        flow.eval_mode = eval_mode
        self.config = flow.get_config()
        if (isinstance(previous, KerasBackend) and not previous.tabulated
                and previous.flow.eval_mode == eval_mode and previous.config == self.config):
            self._given_back = previous.flow.get_weights()
            previous.flow.set_weights(flow.get_weights())
            self.flow, self.tabulated = previous.flow, ()
        else:
            # 2-D coupling flows evaluate their conditioners as exact lookup tables
            # (`kerasflows.tabulate`): 2.5-3x faster heatmaps, same numbers up to rounding.
            self.flow, self.tabulated = tabulate(flow)
            self._given_back = None
        self.event_dim = flow.event_dim
        self.context_dim = flow.context_dim
        if self.context_dim is not None:
            self.context = np.zeros(self.context_dim, np.float32)
        self.num_layers = len(flow.flow_layers)
        self.layer_names = tuple(f"{type(l).__name__} ({l.name})" for l in flow.flow_layers)
        self.forward_only_layers = tuple(sorted({type(l).__name__ for l in flow.flow_layers
                                                  if l.forward_only}))
        self.invertible = not self.forward_only_layers
        self.base_df = flow.base_df

    def give_back(self):
        """Puts back the weights of the flow taken over from `previous`, if one was."""
        if self._given_back is not None:
            self.flow.set_weights(self._given_back)
            self._given_back = None

    def base_params(self):
        """Mean and scale of the base distribution, `[D]` each, in the flow's dtype."""
        loc, scale = self.flow._base_params()
        return np.asarray(loc), np.asarray(scale)

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


def open_backend(kind, path, eval_mode="xla", previous=None):
    """Loads `path` as a `"keras"` (run in `eval_mode`; `previous`: see
    `KerasBackend`) or `"savedmodel"` backend."""
    if kind == "keras":
        return KerasBackend(path, eval_mode, previous)
    if kind == "savedmodel":
        return SavedModelBackend(path)
    raise ValueError(f"unknown model kind {kind!r}; expected 'keras' or 'savedmodel'.")
