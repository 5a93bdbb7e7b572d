"""What each view asks of a flow, as plain functions: arrays in, arrays out.

Runs only on the compute thread. No Qt here; TensorFlow is reached through
a `backends.Backend` (and `kerasflows.targets` for target densities).
"""

import time

import numpy as np

from visualizer import geometry, permutations
from visualizer.backends import TraceUnavailable, _padded
from visualizer.opening import (REFERENCE_POINTS, check_context, describe, load,
                                targets_available)

__all__ = ["load", "check_context", "describe", "density", "sampled_density", "target_density",
           "samples", "sample_sweep",
           "layers", "inspect", "warm_up", "targets_available",
           "TraceUnavailable", "SAMPLED_DENSITY_POINTS", "REFERENCE_POINTS"]

#: Samples behind the density of a forward-only flow (drawn once per model).
SAMPLED_DENSITY_POINTS = 1 << 18


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
