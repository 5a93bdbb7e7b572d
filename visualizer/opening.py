"""Opening a model for the views: `load`, and `describe`'s plain-data summary.

What the model folder's manifest adds (context names, ranges and steps, how
points show as pictures, the target density) is read here, with the
reference points that show where the data live. Runs only on the compute
thread; `compute` re-exports `load`, `check_context`, `describe` and
`targets_available`.
"""

import numpy as np

from visualizer import geometry
from visualizer.backends import open_backend
from visualizer.savedmodel_backend import export_metadata
from visualizer.training_data import recorded_data

__all__ = ["REFERENCE_POINTS", "load", "check_context", "describe", "targets_available"]

#: Points shown where the data live when the model folder has no data sample.
REFERENCE_POINTS = 2000
#: The flow's samples drawn for them, of which the first `REFERENCE_POINTS` are kept:
#: the Samples view's default count (`views.samples.DEFAULT_COUNT`), whose padded
#: shape the views compile anyway (`views.warm_up_plan`); 2000 rows compiled a shape of
#: their own (~8 CPU-s for a spline flow under XLA). Its first rows are the same
#: Gaussian draws as 2000 rows' (Student-t draws differ: rejection sampling).
REFERENCE_DRAW = 10_000

def load(source, eval_mode="xla", context=None, previous=None):
    """Opens a `paths.ModelSource`; returns `(backend, info)` (see `describe`).
    `previous` is the backend open before, whose flow a `.keras` flow of the same
    configuration may take over (`backends.KerasBackend`).

    A `.keras` flow runs in `eval_mode` (see `kerasflows.Flow.eval_mode`). A
    conditional flow starts at `context` (`[C]`; default: the model folder's
    manifest `context`, else the training record's `context_median`, else zeros).
    A `context` given that the Context panel cannot show (see `check_context`)
    raises `ValueError`.
    """
    backend = open_backend(source.kind, source.load_path, eval_mode, previous)
    try:
        if context is not None and backend.context_dim is None:
            raise ValueError(f"{source.path} is not a conditional flow, so it takes no context.")
        manifest, record = source.manifest or {}, _record(source)
        if context is not None:
            backend.set_context(context)            # checks its length and finiteness
            check_context(context, _context_names(manifest, backend.context_dim,
                                                  record.get("context_columns")),
                          *context_values(backend, manifest, record))
        elif backend.context_dim is not None and manifest.get("context"):
            backend.set_context(manifest["context"])    # the model folder's opening context
        elif backend.context_dim is not None and _values(record.get("context_median"),
                                                         backend.context_dim):
            backend.set_context(record["context_median"])   # `kerasflows train`'s contexts
        return backend, describe(backend, source, record)
    except BaseException:
        # the model shown before stays open, with its own weights
        backend.give_back()
        raise


def check_context(context, names, ranges, steps):
    """Raises `ValueError` naming the first value of `context` `[C]` that the Context
    panel cannot show: a coordinate that moves in steps (manifest `context_step`, or
    a class label: `context_values`) takes only `low + k * step` within its range
    (other coordinates take any value)."""
    for k, value in enumerate(np.asarray(context, np.float64).reshape(-1)):
        if not ranges or not steps or steps[k] is None:
            continue
        (low, high), step = ranges[k], steps[k]
        last = len(geometry.stepped_values(low, high, step)) - 1    # the panel's positions
        position = (value - low) / step
        if abs(position - round(position)) > 1e-6 or not 0 <= round(position) <= last:
            raise ValueError(f"the context's {names[k]} = {value:g} is not one of its values, "
                             f"{low:g} to {low + last * step:g} in steps of {step:g} (the "
                             f"manifest's context_range and context_step, or the flow's class "
                             f"labels); received context "
                             f"{[float(f'{v:g}') for v in np.ravel(context)]}.")


def _finite_rows(points):
    return points[np.all(np.isfinite(points), axis=1)]


def _reference_points(backend, source, record):
    """`(points, is_data, where)`: points that show where the data live: the
    finite rows of the model folder's data sample, else (no sample, a sample
    of another width, or no finite row in it) of the training data a `.keras`
    file's `record` names (`training_data.recorded_data`), else the flow's own
    finite samples."""
    sample = source.data_sample
    if sample is not None and sample.ndim == 2 and sample.shape[1] == backend.event_dim:
        sample = _finite_rows(sample)
        if len(sample):
            return sample, True, "the model folder's data_sample.npy"
    if source.kind == "keras":
        points, where = recorded_data(record, source.load_path, backend.event_dim)
        if points is not None:
            return points, True, where
    drawn = np.asarray(backend.sample(REFERENCE_DRAW, seed=0))[:REFERENCE_POINTS]
    drawn = _finite_rows(drawn)
    if not len(drawn):
        cause = ("are its weights finite?" if backend.context is None else
                 f"at the context {[float(f'{v:g}') for v in backend.context]}: a value the "
                 "flow does not take, as a class label it does not know, gives NaN; or "
                 "are its weights finite?")
        raise ValueError(f"every one of the flow's {REFERENCE_POINTS} samples is NaN or "
                         f"infinite ({cause}), and the model folder has no data sample with "
                         "finite rows to show instead.")
    return drawn, False, f"the flow's own samples ({REFERENCE_POINTS}, seed 0)"


def describe(backend, source, record=None):
    """A plain-data summary of an opened model for the GUI (`record`: its `_record`,
    read here when not given)."""
    if backend.event_dim < 2:
        raise ValueError(f"{source.path}: the visualizer shows flows with event_dim >= 2; "
                         f"this one has event_dim={backend.event_dim}.")
    if record is None:
        record = _record(source)
    reference, is_data, where = _reference_points(backend, source, record)
    loc, scale = backend.base_params()
    return {
        "name": source.name, "path": str(source.path), "load_path": str(source.load_path),
        "kind": backend.kind,
        "event_dim": backend.event_dim, "num_layers": backend.num_layers,
        "context_dim": backend.context_dim,
        "context": None if backend.context is None else backend.context.copy(),
        "context_names": _context_names(source.manifest, backend.context_dim,
                                        record.get("context_columns")),
        "data_names": _data_names(source.manifest, record, backend.event_dim),
        **dict(zip(("context_ranges", "context_steps"),
                   context_values(backend, source.manifest, record))),
        "layer_names": list(backend.layer_names), "has_trace": backend.has_trace,
        "invertible": backend.invertible, "base_loc": loc, "base_scale": scale,
        "base_df": None if backend.base_df is None else np.asarray(backend.base_df),
        "forward_only_layers": list(getattr(backend, "forward_only_layers", ())),
        "reference": reference, "reference_is_data": is_data, "reference_source": where,
        "data_mean": reference.mean(0),
        # a model folder's manifest, else the record `fit-target --out` writes in the file
        "target": _target_name(source.target or record.get("target"), backend.event_dim),
        "image": _image(source.manifest, backend.event_dim, reference),
        "manifest": source.manifest or {},
    }


def _data_names(manifest, record, event_dim):
    """Names of the data coordinates, or None (x1, x2, ...): the manifest's `columns`,
    else the model's `record`'s (`_record`: the header of the CSV file `kerasflows
    train` read). Names that are not `event_dim` strings are ignored."""
    return _names((manifest or {}).get("columns"), event_dim) or _names(
        record.get("columns"), event_dim)


def _record(source):
    """The model's own record: a `.keras` file's training record, or a SavedModel's
    `export_metadata` (read as JSON: no kerasflows needed); {} where there is none."""
    if source.kind != "keras":
        return export_metadata(source.load_path)
    try:
        from kerasflows.loading import training_record
        record = training_record(source.load_path)
    except (ImportError, ValueError, OSError):
        return {}
    return record if isinstance(record, dict) else {}


def _names(names, count):
    """`names` stripped if they are `count` non-empty strings, else None."""
    ok = (count is not None and isinstance(names, list) and len(names) == count
          and all(isinstance(n, str) and n.strip() for n in names))
    return [n.strip() for n in names] if ok else None


def _context_names(manifest, context_dim, recorded=None):
    """Names of the context coordinates: the manifest's `context_names`, else
    `recorded` (the header of the `--context` CSV file `kerasflows train` read,
    `context_columns` in the model's record), else c1, c2, ..."""
    if context_dim is None:
        return None
    names = (manifest or {}).get("context_names")
    if isinstance(names, list) and len(names) == context_dim:
        return [str(n) for n in names]
    return _names(recorded, context_dim) or [f"c{k + 1}" for k in range(context_dim)]


def context_values(backend, manifest, record):
    """`(ranges, steps)` of the context's values (see `check_context`): the manifest's
    `context_range` (else the training record's, `kerasflows train`'s quantiles of the
    training contexts) and `context_step`; without them, a flow conditioned on a class
    label (`class_count`) takes 0..K-1 in steps of 1; else `(None, None)`."""
    ranges = (_context_ranges(manifest, backend.context_dim)
              or _context_ranges(record, backend.context_dim))   # `kerasflows train`'s
    steps = _context_steps(manifest, backend.context_dim)
    classes = None if ranges or steps else class_count(backend, manifest, record)
    return ([(0.0, float(classes - 1))], [1.0]) if classes else (ranges, steps)


def class_count(backend, manifest, record):
    """K, for a flow whose one context column is a class label 0..K-1 (K >= 2): the
    model folder's or training record's `context_classes` (`kerasflows train
    --context-classes`), or a `.keras` flow's own `ClassEmbedding`; else None. A label
    outside 0..K-1 gives NaN everywhere, and a fraction is rounded to a label."""
    if backend.context_dim != 1:
        return None
    for spec in (manifest or {}, record or {}):
        k = spec.get("context_classes")
        if isinstance(k, int) and not isinstance(k, bool) and k >= 2:
            return k
    flow = getattr(backend, "flow", None)
    if flow is None:
        return None
    from kerasflows.layers.embedding import label_embedding
    embedding = label_embedding(flow)
    k = None if embedding is None else int(embedding.num_classes)
    return k if k is not None and k >= 2 else None


def _values(values, count):
    """Whether `values` is a list of `count` finite numbers."""
    return (isinstance(values, list) and len(values) == count
            and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                    and np.isfinite(v) for v in values))


def _context_ranges(manifest, context_dim):
    """The manifest's (or a training record's) `context_range` (`[low, high]` per
    coordinate, low < high), or None."""
    ranges = (manifest or {}).get("context_range")
    try:
        ranges = [(float(lo), float(hi)) for lo, hi in ranges]
    except (TypeError, ValueError):
        return None
    ok = context_dim is not None and len(ranges) == context_dim
    return ranges if ok and all(lo < hi for lo, hi in ranges) else None


def _context_steps(manifest, context_dim):
    """The manifest's `context_step` (per coordinate: a step > 0 its values move by, such
    as 1 for a class label, or null for any value), or None."""
    steps = (manifest or {}).get("context_step")
    if not isinstance(steps, list) or context_dim is None or len(steps) != context_dim:
        return None
    try:
        steps = [None if s is None else float(s) for s in steps]
    except (TypeError, ValueError):
        return None
    return steps if all(s is None or (np.isfinite(s) and s > 0) for s in steps) else None


def targets_available():
    """True when `kerasflows.targets` (target densities) can be imported."""
    try:
        import kerasflows.targets  # noqa: F401
    except ImportError:
        return False
    return True


def _image(manifest, event_dim, reference):
    """How the flow's points show as pictures (the Samples view's "As images"), or None.

    From the manifest's `image`: `{"shape": [h, w], "levels": [black, white]}`
    (`h * w` = D; levels in the flow's data units, optional), `declared`;
    else a square shape guessed from D (4x4 or more), not declared. Levels
    not given are the 0.5% and 99.5% quantiles of the reference points.
    """
    spec = (manifest or {}).get("image")
    shape, levels = None, None
    if isinstance(spec, dict):
        try:
            h, w = (int(v) for v in spec["shape"])
            if h > 0 and w > 0 and h * w == event_dim:
                shape = (h, w)
            lo, hi = (float(v) for v in spec.get("levels") or ())
            if np.isfinite([lo, hi]).all() and lo < hi:
                levels = (lo, hi)
        except (KeyError, TypeError, ValueError):
            pass
    declared = shape is not None
    shape = shape or geometry.image_shape_for(event_dim)
    if shape is None:
        return None
    if levels is None:
        finite = np.asarray(reference, np.float64)
        finite = finite[np.isfinite(finite)]
        lo, hi = np.quantile(finite, [0.005, 0.995]) if finite.size else (-1.0, 1.0)
        levels = (float(lo), float(hi) if hi > lo else float(lo) + 1.0)
    return {"shape": shape, "levels": levels, "declared": declared}


def _target_name(name, event_dim):
    """The manifest's (or record's) target if the visualizer can draw it (a known 2-D
    target), else None."""
    if not name or event_dim != 2 or not targets_available():
        return None
    import kerasflows.targets
    return name if name in kerasflows.targets.NAMES else None
