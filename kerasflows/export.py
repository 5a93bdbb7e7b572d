"""SavedModel export for TF Serving, and loading an exported SavedModel back.

`export_saved_model(flow, path)` writes `path/<version>/saved_model.pb` and
`variables/`, the layout TF Serving watches. The SavedModel holds only
TensorFlow graphs and variables, so it runs where kerasflows is not
installed (TF Serving, `tf.saved_model.load` in any TensorFlow program).

Signatures (`[N, D]` batches; a conditional flow also takes `context` in each
of them: `[N, C]`, one row per row of `x` or `z` (in `sample`, `[n, C]`), or
`[1, C]`, one context shared by every row, as the flow's own methods take it):

| signature | inputs | outputs |
|---|---|---|
| `serving_default` | `x` | `log_prob [N]` |
| `sample` | `n` (int32 scalar), `seed` (int32 scalar) | `samples [n, D]`, `log_prob [n]` |
| `forward` | `z` | `x`, `log_det [N]` |
| `inverse` | `x` | `z`, `log_det [N]` |
| `trace` | `z` | `states [L+1, N, D]`, `log_dets [L, N]` |
| `trace_inverse` | `x` | `states [L+1, N, D]`, `log_dets [L, N]` |

Beside the graphs, `<version>/assets.extra/kerasflows.json` (`METADATA_FILE`;
TF Serving loads nothing from `assets.extra/` but warm-up requests) says
what the model takes, for a client that has only the SavedModel:
`event_dim`, `context_dim`, `context_classes` (K, for a flow whose context
is a class label 0..K-1 read by a `ClassEmbedding`, as `label_embedding`
finds it; else `null`), the `base` (`"normal"`, `"learned_normal"` or
`"student_t"`, whose degrees of freedom are `base_df`, else `null`),
`signatures`, the flow's `layers`, the data's
column names `columns` (`null` if not named; `kerasflows export` passes the
names of the CSV file the model was trained on), a conditional flow's
`context_columns` likewise (the `--context` file's header, or a model folder's
`manifest.json` `context_names`: which context column is which, in the order a
client sends them) and `dequantized_columns`
(0-based; `null` if none: the columns `kerasflows train --dequantize` added
uniform noise to, so that a client knows `log_prob` is the density of the
noisy values, and floors those columns of `sample`'s draws to get whole
numbers). `saved_model_metadata(path)` reads it.

`sample` draws the same points as `flow.sample(n, seed=seed)`; `trace` and
`trace_inverse` follow `Flow.trace` and `Flow.trace_inverse(...,
return_log_dets=True)`, so `log p0(z) = log_prob(x) - sum(log_dets)` of
`trace_inverse`.

Example:

```python
kerasflows.export.export_saved_model(flow, "serving/moons")   # serving/moons/1/
served = tf.saved_model.load("serving/moons/1")
served.signatures["serving_default"](x=tf.zeros([3, 2]))["log_prob"]
```
"""

import contextlib
import json
import os
import shutil

import tensorflow as tf

from kerasflows.dequantization import check_columns
from kerasflows.files import make_folders
from kerasflows.layers.base import NoInverseError, check_positive_int
from kerasflows.layers.checks import check_bool
from kerasflows.layers.embedding import label_embedding

__all__ = ["export_saved_model", "load_saved_model", "saved_model_metadata",
           "forward_only_summary", "check_exportable", "SIGNATURES", "METADATA_FILE"]

SIGNATURES = ("serving_default", "sample", "forward", "inverse", "trace", "trace_inverse")
#: What the model takes, as JSON, inside each version directory (module notes).
METADATA_FILE = os.path.join("assets.extra", "kerasflows.json")


class _FlowServable(tf.Module):
    """Holds a flow's variables and one `tf.function` per signature.

    The signatures share two traced functions, the whole forward pass and
    the whole inverse pass (with per-layer states and log-dets), so each
    direction's graph is stored once in the SavedModel.
    """

    def __init__(self, flow):
        super().__init__(name="kerasflows_servable")
        # Tracking the variables (not the Keras objects) keeps the SavedModel
        # free of Python classes: only graphs and variables are written. The
        # tf.Variables themselves (`.value`), which the graphs read: tracked as
        # Keras variables they were restored by `tf.saved_model.load` but not by
        # the session loader of TF Serving and `saved_model_cli run` ("Could not
        # find variable ...").
        self.flow_variables = [v.value for v in flow.variables]
        D, C, dtype = flow.event_dim, flow.context_dim, flow.compute_dtype
        self._batch = lambda name: tf.TensorSpec([None, D], dtype, name=name)
        self._context = [] if C is None else [tf.TensorSpec([None, C], dtype, name="context")]
        def forward(z, context=None):
            z = _checked(z, D, "z")        # before _rows_of reads its rows (a rank-0 z)
            return flow._run_forward(z, _rows_of(_checked(context, C, "context"), z),
                                     keep=True)

        def inverse(x, context=None):
            x = _checked(x, D, "x")
            return flow._run_inverse(x, _rows_of(_checked(context, C, "context"), x),
                                     keep=True)
        forward = self._function(forward, [self._batch("z")])
        inverse = self._function(inverse, [self._batch("x")])
        self.endpoints = {name: self._endpoint(name, flow, forward, inverse, D)
                          for name in SIGNATURES}

    def _function(self, fn, specs):
        return tf.function(fn, input_signature=specs + self._context, autograph=False)

    def _endpoint(self, name, flow, forward, inverse, D):
        shaped = lambda t: tf.ensure_shape(t, [None, D])
        if name == "sample":
            def sample(n, seed, context=None):
                # a fed [1] passes the signature (TF Serving checks only the dtype) and
                # failed as "In[0] should be a scalar"; EnsureShape runs and names it
                n, seed = (tf.ensure_shape(t, [], name=f"{t_name}_must_be_a_scalar")
                           for t, t_name in ((n, "n"), (seed, "seed")))
                check = tf.debugging.Assert(n >= 0, ["n must be >= 0 (the number of "
                                                     "samples); received", n])
                with tf.control_dependencies([check]):
                    n = tf.identity(n)
                z = flow._base_sample(n, seed, tf.constant(1.0, flow.compute_dtype))
                x, log_det, _ = forward(z, context)      # context [n, C] or [1, C]
                return {"samples": shaped(x), "log_prob": flow.base_log_prob(z) - log_det}
            ints = [tf.TensorSpec([], tf.int32, name="n"), tf.TensorSpec([], tf.int32, name="seed")]
            return self._function(sample, ints)
        if name in ("forward", "trace"):
            def run(z, context=None):
                x, log_det, (states, log_dets) = forward(z, context)
                if name == "trace":
                    return _trace(states, log_dets)
                return {"x": shaped(x), "log_det": log_det}
            return self._function(run, [self._batch("z")])

        def run(x, context=None):
            z, log_det, (states, log_dets) = inverse(x, context)
            if name == "trace_inverse":
                return _trace(states, log_dets)
            if name == "inverse":
                return {"z": shaped(z), "log_det": log_det}
            return {"log_prob": flow.base_log_prob(z) + log_det}
        return self._function(run, [self._batch("x")])


def _trace(states, log_dets):
    """A trace signature's outputs: `states` `[L + 1, N, D]` and `log_dets` `[L, N]`,
    `[0, N]` in the states' dtype for a flow with no layers."""
    stacked = (tf.stack(log_dets) if log_dets
               else tf.zeros([0, tf.shape(states[0])[0]], states[0].dtype))
    return {"states": tf.stack(states), "log_dets": stacked}


def _checked(t, width, name):
    """`t` after a check that it is `[N, width]`: the signatures declare that shape,
    but neither TF Serving nor a loaded signature enforces it, and a batch of
    another width gave numbers (a 2-D flow's log_prob of `[[0.5]]`) or a shape
    error of some op inside."""
    if t is None:
        return None
    # The rank cannot be asked: the graph takes it from the declared [None, width]
    # (a row sent as [width], without its batch axis, passed and gave `width`
    # log-probs). The shape is a runtime value: padded with -1s, it reads
    # [N, width, -1] in its first three places only for [N, width] (for width 1,
    # [N] and [N, 1, 1] have as many elements as [N, 1]).
    shape = tf.shape(t, out_type=tf.int64)
    padded = tf.concat([shape, tf.constant([-1, -1], tf.int64)], 0)
    ok = tf.reduce_all(tf.equal(padded[1:3], tf.constant([width, -1], tf.int64)))
    check = tf.debugging.Assert(ok, [f"{name} must have shape [N, {width}]; received shape",
                                     shape])
    with tf.control_dependencies([check]):
        return tf.identity(t)


def _rows_of(context, batch):
    """`context` for the rows of `batch`: `[N, C]` as it is, or `[1, C]` repeated (one
    context shared by every row), as `Flow` takes it (`layers.base.context_rows`,
    here with the row count known only when the signature runs)."""
    if context is None:
        return None
    rows, have = tf.shape(batch)[0], tf.shape(context)[0]
    check = tf.debugging.Assert(
        tf.logical_or(tf.equal(have, rows), tf.equal(have, 1)),
        ["context must have one row per input row (n in sample) or 1 row shared by all; "
         "input rows and context rows:", rows, have])
    with tf.control_dependencies([check]):
        return tf.broadcast_to(context, tf.stack([rows, tf.shape(context)[1]]))


def forward_only_summary(flow):
    """None for a flow whose every layer has an inverse; else a phrase naming its
    forward-only layers ("32 of its 32 layers (Planar: 'planar', ...) are
    forward-only, with no inverse")."""
    from kerasflows.flow import Flow        # (kerasflows.flow imports this module)
    if not isinstance(flow, Flow):           # (a path: "'str' has no attribute flow_layers")
        raise TypeError("`flow` must be a kerasflows.Flow (load a saved one with "
                        f"kerasflows.load first). Received: flow={flow!r}")
    layers = [layer for layer in flow.flow_layers if layer.forward_only]
    if not layers:
        return None
    kinds = ", ".join(sorted({type(layer).__name__ for layer in layers}))
    names = ", ".join(repr(layer.name) for layer in layers[:3])
    more = f" and {len(layers) - 3} more" if len(layers) > 3 else ""
    return (f"{len(layers)} of its {len(flow.flow_layers)} layers ({kinds}: {names}{more}) "
            "are forward-only, with no inverse")


def check_exportable(flow):
    """Raises NoInverseError for a flow with forward-only layers: the signatures
    `serving_default`, `inverse` and `trace_inverse` run the inverse."""
    forward_only = forward_only_summary(flow)
    if forward_only:
        raise NoInverseError(
            f"Cannot export this flow as a SavedModel: {forward_only}, which "
            "serving_default, inverse and trace_inverse need. Export a flow of invertible "
            "layers (any kerasflows.models recipe); this one can still draw samples with "
            "their log-densities (Flow.sample_and_log_prob; the `kerasflows sample` command).")


def export_saved_model(flow, path, version=1, overwrite=False, columns=None,
                       dequantized_columns=None, context_columns=None):
    """Writes `flow` as a TF Serving SavedModel in `path/<version>/`.

    Args:
        flow: a `kerasflows.Flow` with an inverse (every layer invertible).
        path: the model's base directory (TF Serving's `--model_base_path`).
        version: the version subdirectory, an integer >= 1.
        overwrite: replace an existing `path/<version>/`.
        columns: the names of the data's `event_dim` columns, in order, for
            `METADATA_FILE` (None: not named).
        dequantized_columns: the column indices the flow was trained on with
            uniform noise added (`kerasflows.dequantization`), for
            `METADATA_FILE` (None: none).
        context_columns: the names of a conditional flow's `context_dim`
            context columns, in order, for `METADATA_FILE` (None: not named).

    The SavedModel is written to a hidden directory in `path` and renamed to
    `<version>` when complete, so TF Serving (or the visualizer following
    `path`) never sees a partial version.

    Returns:
        The directory written, `path/<version>`.

    Raises:
        ValueError: bad version, `path` an existing file, an existing
            version directory without `overwrite=True`, `columns` that are
            not `event_dim` strings, `context_columns` that are not
            `context_dim` strings, or `dequantized_columns` that are not
            distinct indices in 0..event_dim-1.
        NoInverseError: a flow with forward-only layers (a `ValueError` too).
    """
    version = check_positive_int("version", version)
    overwrite = check_bool("overwrite", overwrite)    # ("False" replaced the version)
    check_exportable(flow)
    metadata = _metadata(flow, columns, dequantized_columns, context_columns)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{os.fspath(path)} is a file; the export's base directory must be a "
                         "folder (or a path where one can be made).")
    target = os.path.join(os.fspath(path), str(version))
    if os.path.exists(target) and not os.path.isdir(target):
        raise ValueError(f"{target} is a file where version {version}'s folder would go; "
                         "move it, or choose another version.")
    if os.path.exists(target) and os.listdir(target) and not overwrite:
        raise ValueError(f"{target} already exists; choose another version or pass "
                         "overwrite=True.")
    servable = _FlowServable(flow)
    # Written beside the version directory under a name TF Serving ignores (not a
    # number), then renamed into place: a server polling `path` for new versions
    # never loads a half-written one.
    made = make_folders(os.fspath(path))
    partial = os.path.join(os.fspath(path), f".{version}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    done = False
    try:
        tf.saved_model.save(servable, partial, signatures=servable.endpoints)
        os.makedirs(os.path.dirname(os.path.join(partial, METADATA_FILE)), exist_ok=True)
        with open(os.path.join(partial, METADATA_FILE), "w") as f:
            json.dump(metadata, f, indent=1)
        if os.path.exists(target):                 # overwrite (or an empty directory)
            old = os.path.join(os.fspath(path), f".{version}.old-{os.getpid()}")
            os.rename(target, old)
            os.rename(partial, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(partial, target)
        done = True
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        for folder in [] if done else made:     # a failed export leaves no new folder
            with contextlib.suppress(OSError):
                os.rmdir(folder)
    return target


def _names(names, what, count, argument):
    """`names` as a list of `count` non-empty strings (one string is one name), or
    None; a ValueError naming `argument` otherwise."""
    if names is None:
        return None
    names = [names] if isinstance(names, str) else list(names)       # not "a","b",...
    if len(names) != count or not all(isinstance(c, str) and c.strip() for c in names):
        raise ValueError(f"{argument} names the flow's {count} {what} columns (non-empty "
                         f"strings, in order); received {names!r}.")
    return names


def _metadata(flow, columns, dequantized_columns=None, context_columns=None):
    """`METADATA_FILE`'s content for `flow`; checks `columns`, `dequantized_columns` and
    `context_columns`."""
    columns = _names(columns, "data", flow.event_dim, "columns")
    if context_columns is not None and flow.context_dim is None:
        raise ValueError(f"context_columns names a conditional flow's context columns; this "
                         f"flow takes no context. Received context_columns={context_columns!r}.")
    context_columns = _names(context_columns, "context", flow.context_dim, "context_columns")
    if dequantized_columns is not None:
        dequantized_columns = check_columns(dequantized_columns, flow.event_dim,
                                            "dequantized_columns")
    df = flow.base_df
    embedding = label_embedding(flow)
    return {"event_dim": flow.event_dim, "context_dim": flow.context_dim,
            "context_classes": None if embedding is None else int(embedding.num_classes),
            "base": flow.base, "base_df": None if df is None else [float(v) for v in df],
            "signatures": list(SIGNATURES), "columns": columns,
            "context_columns": context_columns,
            "dequantized_columns": dequantized_columns or None,
            "layers": [f"{type(layer).__name__} ({layer.name})" for layer in flow.flow_layers]}


def saved_model_metadata(path):
    """The `METADATA_FILE` of the SavedModel at `path` (`DIR` or `DIR/<version>`) as a
    dict, or None when it has none (exported before it was written) or it does not
    read as a JSON object."""
    try:
        with open(os.path.join(_resolve_version_dir(os.fspath(path)), METADATA_FILE)) as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _resolve_version_dir(path):
    """`path` itself if it holds saved_model.pb, else its highest numbered subdirectory."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = [d for d in os.listdir(path) if d.isdigit()
                and os.path.isdir(os.path.join(path, d))]
    if not versions:
        raise ValueError(f"{path} is not a SavedModel: it holds neither saved_model.pb nor "
                         "numbered version directories.")
    return os.path.join(path, max(versions, key=int))


def load_saved_model(path):
    """Loads an exported SavedModel (`DIR` or `DIR/<version>`) and checks its signatures.

    Returns the object from `tf.saved_model.load`; call its `.signatures[name]`.

    Raises:
        ValueError: a missing, unreadable or incomplete SavedModel, naming the
            file and the problem.
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        hint = "; open it with kerasflows.load" if path.endswith(".keras") else ""
        raise ValueError(f"{path} is a file, not a SavedModel directory{hint}.")
    if not os.path.isdir(path):
        raise ValueError(f"{path}: no such SavedModel directory.")
    target = _resolve_version_dir(path)
    if not os.path.isfile(os.path.join(target, "saved_model.pb")):
        raise ValueError(f"{target}: missing saved_model.pb; not a complete SavedModel.")
    try:
        loaded = tf.saved_model.load(target)
    except Exception as e:  # TF raises many types for damaged files.
        raise ValueError(f"{target}: cannot load the SavedModel (damaged or incomplete): "
                         f"{_first_line(e)}") from e
    missing = [s for s in SIGNATURES if s not in loaded.signatures]
    if missing:
        raise ValueError(f"{target}: not a kerasflows SavedModel; missing signatures "
                         f"{missing} (has {sorted(loaded.signatures)}).")
    return loaded


def _first_line(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]
