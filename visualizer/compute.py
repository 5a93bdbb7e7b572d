"""What each view asks of a flow, as plain functions: arrays in, arrays out.

Runs only on the compute thread. No Qt here; TensorFlow is reached through
a `backends.Backend` (and `kerasflows.targets` for target densities).
"""

import time

import numpy as np

from visualizer import geometry, permutations
from visualizer.backends import TraceUnavailable, _padded, open_backend

__all__ = ["load", "check_context", "describe", "density", "sampled_density", "target_density",
           "samples", "sample_sweep",
           "layers", "inspect", "warm_up", "targets_available",
           "TraceUnavailable", "SAMPLED_DENSITY_POINTS"]

REFERENCE_POINTS = 2000
#: Samples behind the density of a forward-only flow (drawn once per model).
SAMPLED_DENSITY_POINTS = 1 << 18


def load(source, eval_mode="xla", context=None):
    """Opens a `paths.ModelSource`; returns `(backend, info)` (see `describe`).

    A `.keras` flow runs in `eval_mode` (see `kerasflows.Flow.eval_mode`). A
    conditional flow starts at `context` (`[C]`; default: the model folder's
    manifest `context`, else zeros). A `context` given that the Context panel
    cannot show (see `check_context`) raises `ValueError`.
    """
    backend = open_backend(source.kind, source.load_path, eval_mode)
    if context is not None and backend.context_dim is None:
        raise ValueError(f"{source.path} is not a conditional flow, so it takes no context.")
    manifest = source.manifest or {}
    if context is not None:
        backend.set_context(context)            # checks its length and finiteness
        check_context(context, _context_names(manifest, backend.context_dim),
                      _context_ranges(manifest, backend.context_dim),
                      _context_steps(manifest, backend.context_dim))
    elif backend.context_dim is not None and manifest.get("context"):
        backend.set_context(manifest["context"])    # the model folder's opening context
    return backend, describe(backend, source)


def check_context(context, names, ranges, steps):
    """Raises `ValueError` naming the first value of `context` `[C]` that the Context
    panel cannot show: a coordinate that moves in steps (manifest `context_step`)
    takes only `low + k * step` within its `context_range` (other coordinates take
    any value)."""
    for k, value in enumerate(np.asarray(context, np.float64).reshape(-1)):
        if not ranges or not steps or steps[k] is None:
            continue
        (low, high), step = ranges[k], steps[k]
        last = int(round((high - low) / step))          # the panel's slider positions
        while last > 0 and low + last * step > high + 1e-6 * step:
            last -= 1
        position = (value - low) / step
        if abs(position - round(position)) > 1e-6 or not 0 <= round(position) <= last:
            raise ValueError(f"the context's {names[k]} = {value:g} is not one of its values, "
                             f"{low:g} to {low + last * step:g} in steps of {step:g} (the "
                             f"manifest's context_range and context_step); received context "
                             f"{[float(f'{v:g}') for v in np.ravel(context)]}.")


def _finite_rows(points):
    return points[np.all(np.isfinite(points), axis=1)]


def _reference_points(backend, source):
    """Points that show where the data live: the finite rows of the model
    folder's data sample, else (no sample, a sample of another width, or
    no finite row in it) the flow's own finite samples."""
    sample = source.data_sample
    if sample is not None and sample.ndim == 2 and sample.shape[1] == backend.event_dim:
        sample = _finite_rows(sample)
        if len(sample):
            return sample, True
    drawn = _finite_rows(np.asarray(backend.sample(REFERENCE_POINTS, seed=0)))
    if not len(drawn):
        raise ValueError(f"every one of the flow's {REFERENCE_POINTS} samples is NaN or "
                         "infinite (are its weights finite?), and the model folder has no "
                         "data sample with finite rows to show instead.")
    return drawn, False


def describe(backend, source):
    """A plain-data summary of an opened model for the GUI."""
    if backend.event_dim < 2:
        raise ValueError(f"the visualizer shows flows with event_dim >= 2; this one has "
                         f"event_dim={backend.event_dim}.")
    reference, is_data = _reference_points(backend, source)
    loc, scale = backend.base_params()
    return {
        "name": source.name, "path": str(source.path), "load_path": str(source.load_path),
        "kind": backend.kind,
        "event_dim": backend.event_dim, "num_layers": backend.num_layers,
        "context_dim": backend.context_dim,
        "context": None if backend.context is None else backend.context.copy(),
        "context_names": _context_names(source.manifest, backend.context_dim),
        "context_ranges": _context_ranges(source.manifest, backend.context_dim),
        "context_steps": _context_steps(source.manifest, backend.context_dim),
        "layer_names": list(backend.layer_names), "has_trace": backend.has_trace,
        "invertible": backend.invertible, "base_loc": loc, "base_scale": scale,
        "forward_only_layers": list(getattr(backend, "forward_only_layers", ())),
        "reference": reference, "reference_is_data": is_data,
        "data_mean": reference.mean(0),
        "target": _target_name(source.target, backend.event_dim),
        "image": _image(source.manifest, backend.event_dim, reference),
        "manifest": source.manifest or {},
    }


def _context_names(manifest, context_dim):
    """Names of the context coordinates: the manifest's `context_names`, else c1, c2, ..."""
    if context_dim is None:
        return None
    names = (manifest or {}).get("context_names")
    if isinstance(names, list) and len(names) == context_dim:
        return [str(n) for n in names]
    return [f"c{k + 1}" for k in range(context_dim)]


def _context_ranges(manifest, context_dim):
    """The manifest's `context_range` (`[low, high]` per coordinate, low < high), or None."""
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
    """The manifest's target if the visualizer can draw it (a known 2-D target), else None."""
    if not name or event_dim != 2 or not targets_available():
        return None
    import kerasflows.targets
    return name if name in kerasflows.targets.NAMES else None


def density(backend, region, resolution, projection):
    """`log p(x)` on a `resolution`^2 pixel grid over `region` (row-major, y up).

    The grid is `region` snapped to the lattice of its pixel size (see
    `geometry.snap_region`; the returned `"region"` is the snapped one). The
    last heatmap of each resolution is kept, so after a pan at the same zoom
    (same pixel size, same projection) the pixels both grids share are copied
    and only the new ones go through the flow (`"reused"` counts the copied
    ones). A zoom, a new resolution or a pan by more than half the view
    evaluates every pixel.
    """
    n = resolution
    key = (projection.dims, projection.held.tobytes())
    region, origin, step, last = _lattice(backend, region, n, key)
    xy = geometry.grid_points(region, n)
    image = np.empty((n, n), np.float32)
    need = np.ones((n, n), bool)
    if last is not None:
        di, dj = origin[0] - last["origin"][0], origin[1] - last["origin"][1]
        rows = slice(max(0, -dj), min(n, n - dj))
        cols = slice(max(0, -di), min(n, n - di))
        shared = max(0, rows.stop - rows.start) * max(0, cols.stop - cols.start)
        if 2 * shared >= n * n:
            image[rows, cols] = last["image"][rows.start + dj:rows.stop + dj,
                                              cols.start + di:cols.stop + di]
            need[rows, cols] = False
    todo = np.flatnonzero(need)
    if len(todo) == n * n:
        image = backend.log_prob(projection.embed(xy)).reshape(n, n)
    elif len(todo):     # the new pixels, in blocks of one compiled shape
        new = projection.embed(xy[todo])
        image.ravel()[todo] = _padded(lambda v: (backend.log_prob(v),), new,
                                      chunk=PAN_BLOCK, rows=lambda _: PAN_BLOCK)[0]
    backend.memo("density_lattices", dict)[n] = {"key": key, "step": step, "origin": origin,
                                                 "image": image}
    return {"image": image, "region": tuple(region), "resolution": n,
            "reused": n * n - len(todo), "context": _context(backend)}


def _context(backend):
    """The context a conditional flow was evaluated at (a list), or None."""
    return None if backend.context is None else backend.context.tolist()


#: Pixel sizes within this relative difference count as the same zoom (a pan).
SAME_ZOOM = 1e-6
#: A panned heatmap evaluates its new pixels in blocks of this many rows
#: (the coarse heatmap's shape, compiled at warm-up).
PAN_BLOCK = 64 * 64


def _lattice(backend, region, n, key=None):
    """`region` snapped for an `n`^2 heatmap: `(region, origin, step, last)`.

    At the zoom of the last flow heatmap of this resolution its pixel size is
    kept exactly (so every heatmap of that zoom, the target's beside the
    flow's too, lies on one lattice); `last` is that heatmap when `key` (the
    projection) matches too, else None.
    """
    last = backend.memo("density_lattices", dict).get(n)
    x0, x1, y0, y1 = region
    same_zoom = last is not None and np.allclose(
        last["step"], ((x1 - x0) / n, (y1 - y0) / n), rtol=SAME_ZOOM, atol=0)
    region, origin, step = geometry.snap_region(region, n, last["step"] if same_zoom else None)
    reusable = same_zoom and key is not None and last["key"] == key
    return region, origin, step, last if reusable else None


def sampled_density(backend, region, resolution, n=SAMPLED_DENSITY_POINTS, seed=0):
    """log p(x) of a flow without an inverse, from `n` of its own samples (2-D flows),
    on the pixel grid of `density`.

    `sample_and_log_prob` gives the exact log p at each sample (forward
    direction only); a pixel shows the log of the mean p(x) of the samples
    that fell in it, `-inf` where none did. The samples are drawn once per
    model (fixed `seed`), so panning only re-bins them.
    """
    if backend.event_dim != 2:
        raise ValueError("a density from samples needs a 2-D flow; this one has "
                         f"event_dim={backend.event_dim}.")
    x, log_p = backend.memo(("sample_and_log_prob", n, seed),
                            lambda: backend.sample_and_log_prob(n, seed))
    region = _lattice(backend, region, resolution)[0]
    image, inside = geometry.pixel_log_mean(x, log_p, region, resolution)
    return {"image": image, "region": tuple(region), "resolution": resolution,
            "samples": int(n), "samples_in_view": inside, "context": _context(backend)}


def target_density(backend, name, region, resolution):
    """The target `name`'s normalised log-density, `log_density(x) - log_z`, on the
    pixel grid of `density` (2-D flows; see `kerasflows.targets`)."""
    import kerasflows.targets
    import tensorflow as tf
    target = kerasflows.targets.get(name)
    region = _lattice(backend, region, resolution)[0]
    xy = geometry.grid_points(region, resolution)
    log_p = target(tf.constant(xy)).numpy() - np.float32(target.log_z)
    return {"image": log_p.reshape(resolution, resolution), "region": tuple(region),
            "resolution": resolution, "target": name}


def samples(backend, n, seed, temperature=1.0):
    """`n` samples `[n, D]` from the flow (the base scaled by `temperature`)."""
    return {"points": backend.sample(n, seed, temperature), "seed": seed,
            "temperature": temperature}


def sample_sweep(backend, coordinate, values, per, seed, temperature=1.0):
    """`per` samples at each of `values` of context coordinate `coordinate` (the other
    coordinates as the backend's context), the same base noise (`seed`) for each:
    `points [len(values) * per, D]`, value by value."""
    points = []
    for v in values:
        context = backend.context.copy()
        context[coordinate] = v
        points.append(backend.sample_at(context, per, seed, temperature))
    return {"points": np.concatenate(points), "seed": seed, "temperature": temperature,
            "sweep": {"coordinate": int(coordinate), "values": [float(v) for v in values],
                      "per": int(per)}}


def layers(backend, direction, points):
    """States of `points [N, D]` after every layer.

    `direction="forward"` takes base points through the layers to data
    space (`states[k]` after layer k-1, per-layer forward log|det|);
    `"inverse"` takes data points back to the base.
    """
    if direction == "forward":
        states, log_dets = backend.trace(points)
    elif direction == "inverse":
        states, log_dets = backend.trace_inverse(points)
    else:
        raise ValueError(f"direction must be 'forward' or 'inverse'; received {direction!r}.")
    return {"states": states, "log_dets": log_dets, "direction": direction}


#: Points traced beside an inspected one (D > 2) to tell a step that only reorders
#: the coordinates from one that happens to leave one point's values in place.
INSPECT_NEIGHBOURS = 7


def inspect(backend, x):
    """Everything about one data point `x [D]`: its base image and each layer's log|det|.

    Returns x, z = inverse(x), log p0(z), the per-step inverse log|det J|
    (data to base, or None when the model has no trace signatures), the
    path `[L+1, D]` from x to z, and log p(x); `log p0(z) = log p(x) - sum`
    of the inverse log-dets. For D > 2 with a trace, also `sources`: per
    inverse step, `permutations.column_sources` (None: it changed values), so
    the path can be drawn in the coordinates the shown ones move to.
    """
    x = np.asarray(x, np.float32).reshape(1, -1)
    log_p = float(backend.log_prob(x)[0])
    sources = None
    if backend.has_trace:
        rows = x
        if x.shape[1] > 2:
            near = np.random.default_rng(0).standard_normal((INSPECT_NEIGHBOURS, x.shape[1]))
            rows = np.concatenate([x, x + near.astype(np.float32)])
        states, log_dets = backend.trace_inverse(rows)
        path, steps = states[:, 0], log_dets[:, 0]
        z, total = path[-1], float(steps.sum())
        if x.shape[1] > 2:
            sources = [permutations.column_sources(a, b) for a, b in zip(states[:-1], states[1:])]
    else:
        z, total = backend.inverse(x)
        z, total, path, steps = z[0], float(total[0]), None, None
    return {"x": x[0], "z": z, "log_p0": log_p - total, "log_det_total": total,
            "log_dets": steps, "path": path, "sources": sources, "log_prob": log_p}


def warm_up(backend, method, rows):
    """Runs `backend.<method>` once on `rows` zeros, so XLA compiles that shape now."""
    getattr(backend, method)(np.zeros((rows, backend.event_dim), np.float32))
    return {"method": method, "rows": rows}


def timed(fn, *args, **kwargs):
    """Runs `fn`; returns `(result, seconds)`."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
