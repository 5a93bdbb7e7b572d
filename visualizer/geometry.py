"""NumPy helpers shared by the compute side and the views (no TensorFlow, no Qt).

Regions are `(x0, x1, y0, y1)` in the two displayed coordinates; points in
the flow's full D dimensions are built by `embed`, which holds the other
coordinates at fixed values.
"""

import numpy as np

__all__ = ["Projection", "pixel_centers", "grid_points", "snap_region", "grid_lines", "embed",
           "lerp_states", "color_levels", "robust_region", "covering_region", "pad_region",
           "equal_scales", "is_square", "SCALE_RATIO",
           "pixel_log_mean", "shown_width",
           "tile_images", "tile_index", "side_by_side", "image_shape_for", "stepped_values"]


def stepped_values(low, high, step):
    """The values `low + k * step`, k = 0, 1, ..., of a coordinate that moves in
    steps within `[low, high]` (to a millionth of a step): its last value is the
    last step inside the range, 22 for 0 to 23 in steps of 2 (not 24, past it).
    The Context panel's slider, its sweeps and `opening.check_context` all take
    these values."""
    last = int(round((high - low) / step))
    while last > 0 and low + last * step > high + 1e-6 * step:
        last -= 1
    return low + step * np.arange(max(last, 0) + 1)


class Projection:
    """Which two coordinates are shown and where the others are held.

    Args:
        event_dim: D.
        dims: the (x, y) coordinate indices shown.
        held: `[D]` values of the coordinates not shown (entries at `dims`
            are ignored).
    """

    def __init__(self, event_dim, dims=(0, 1), held=None):
        self.event_dim = int(event_dim)
        if self.event_dim < 2:
            raise ValueError(f"the visualizer needs event_dim >= 2; received {event_dim}.")
        dims = tuple(int(d) for d in dims)
        if len(dims) != 2 or dims[0] == dims[1] or not all(0 <= d < event_dim for d in dims):
            raise ValueError(f"dims must be two different indices in [0, {event_dim - 1}]; "
                             f"received {dims}.")
        self.dims = dims
        held = np.zeros(event_dim, np.float32) if held is None else np.asarray(held, np.float32)
        if held.shape != (event_dim,):
            raise ValueError(f"held must have shape ({event_dim},); received {held.shape}.")
        self.held = held.copy()

    def embed(self, xy):
        """`[N, 2]` displayed coordinates to `[N, D]` points."""
        return embed(xy, self.dims, self.held)

    def project(self, points):
        """`[..., D]` points to `[..., 2]` displayed coordinates."""
        return np.asarray(points)[..., list(self.dims)]

    def hidden(self):
        """Indices of the coordinates that are held fixed."""
        return [d for d in range(self.event_dim) if d not in self.dims]


def embed(xy, dims, held):
    """Returns `[N, D]` points equal to `held` except at `dims`, set from `xy`."""
    xy = np.asarray(xy, np.float32)
    out = np.repeat(np.asarray(held, np.float32)[None], len(xy), axis=0)
    out[:, dims[0]] = xy[:, 0]
    out[:, dims[1]] = xy[:, 1]
    return out


def pixel_centers(lo, hi, n):
    """Centres of `n` equal pixels covering `[lo, hi]`."""
    step = (hi - lo) / n
    return lo + step * (np.arange(n, dtype=np.float64) + 0.5)


def grid_points(region, resolution):
    """`[res*res, 2]` pixel centres, row-major: row i has y = i-th centre (bottom up)."""
    x0, x1, y0, y1 = region
    xs = pixel_centers(x0, x1, resolution)
    ys = pixel_centers(y0, y1, resolution)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)


def snap_region(region, resolution, step=None):
    """`region` moved onto the lattice of its pixel size, by less than half a pixel.

    Returns `(snapped, origin, step)`: `snapped` covers `resolution` pixels
    of size `step = (dx, dy)` (the region's own unless given) starting at
    lattice cell `origin = (i, j)`, i.e. at `(i * dx, j * dy)`. Two regions
    snapped with the same step have the same pixel centres where they
    overlap, which is what lets a panned heatmap reuse its pixels.
    """
    x0, x1, y0, y1 = region
    dx, dy = step or ((x1 - x0) / resolution, (y1 - y0) / resolution)
    if not (0 < dx < np.inf and 0 < dy < np.inf):
        raise ValueError(f"a heatmap region needs a finite, positive width and height; "
                         f"received region={tuple(region)}.")
    i, j = int(round(x0 / dx)), int(round(y0 / dy))
    snapped = (i * dx, (i + resolution) * dx, j * dy, (j + resolution) * dy)
    return snapped, (i, j), (dx, dy)


def pixel_log_mean(points, log_values, region, resolution):
    """`log` of the mean of `exp(log_values)` over the points in each pixel.

    Pixels are those of `grid_points(region, resolution)` (row-major, row i
    the i-th from the bottom); pixels holding no point are `-inf`. Returns
    `(image [res, res], points_in_region)`.
    """
    x0, x1, y0, y1 = region
    pts = np.asarray(points, np.float64)
    vals = np.asarray(log_values, np.float64)
    col = np.floor((pts[:, 0] - x0) / (x1 - x0) * resolution)
    row = np.floor((pts[:, 1] - y0) / (y1 - y0) * resolution)
    inside = ((col >= 0) & (col < resolution) & (row >= 0) & (row < resolution)
              & np.isfinite(vals))
    index = (row[inside] * resolution + col[inside]).astype(np.int64)
    vals = vals[inside]
    top = vals.max() if len(vals) else 0.0
    size = resolution * resolution
    total = np.bincount(index, weights=np.exp(vals - top), minlength=size)
    count = np.bincount(index, minlength=size)
    with np.errstate(divide="ignore", invalid="ignore"):
        image = np.where(count > 0, np.log(total / np.maximum(count, 1)) + top, -np.inf)
    return image.reshape(resolution, resolution), int(inside.sum())


def grid_lines(region, lines=17, points_per_line=80):
    """A square grid as one polyline: returns `(xy [M, 2], connect [M] bool)`.

    `connect[i]` is False at the last point of each line, so a curve drawn
    with this `connect` array shows separate lines (vertical, then horizontal).
    """
    x0, x1, y0, y1 = region
    t = np.linspace(0.0, 1.0, points_per_line)
    fixed = np.linspace(0.0, 1.0, lines)
    xs, ys = [], []
    for f in fixed:                                   # vertical lines
        xs.append(np.full_like(t, x0 + f * (x1 - x0)))
        ys.append(y0 + t * (y1 - y0))
    for f in fixed:                                   # horizontal lines
        xs.append(x0 + t * (x1 - x0))
        ys.append(np.full_like(t, y0 + f * (y1 - y0)))
    xy = np.stack([np.concatenate(xs), np.concatenate(ys)], 1).astype(np.float32)
    connect = np.ones(len(xy), bool)
    connect[points_per_line - 1::points_per_line] = False
    return xy, connect


def lerp_states(states, t):
    """States `[L+1, N, k]` at fractional layer position `t` in `[0, L]`, blended linearly."""
    last = len(states) - 1
    t = float(np.clip(t, 0, last))
    i = min(int(np.floor(t)), max(last - 1, 0))
    w = t - i
    if last == 0 or w == 0:
        return states[i]
    if w == 1:
        return states[i + 1]
    return (1 - w) * states[i] + w * states[i + 1]


def color_levels(image, log_scale=True, span=12.0):
    """Colour-bar limits: `[max - span, max]` nats for log p (clipped to the data), `[0, max]` for p."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    hi = float(finite.max())
    if not log_scale:
        return 0.0, hi if hi > 0 else 1.0
    lo = max(float(finite.min()), hi - span)
    return (lo, hi) if hi > lo else (hi - 1.0, hi)


#: Two shown coordinates whose spreads (1% to 99% quantiles) differ by more than
#: this factor are drawn each on its own scale: a non-square region, the aspect
#: unlocked (age in years against income in dollars); within it, on one scale.
SCALE_RATIO = 4.0


def _finite_rows(points):
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    return pts[np.all(np.isfinite(pts), axis=1)]


def equal_scales(points, quantile=0.01):
    """Whether the two coordinates of `points [N, 2]` spread over similar ranges
    (within `SCALE_RATIO`), so that one scale suits both; True with too few points
    to tell, or when one of them does not spread at all."""
    pts = _finite_rows(points)
    if len(pts) < 2:
        return True
    spread = np.quantile(pts, 1 - quantile, axis=0) - np.quantile(pts, quantile, axis=0)
    small, large = sorted(spread)
    # a coordinate with no spread (one value) sets no scale of its own
    return small <= 0 or large / small <= SCALE_RATIO


def is_square(region, rtol=1e-6):
    """Whether `region` is as wide as it is high (one scale for both axes)."""
    x0, x1, y0, y1 = map(float, region)
    return abs((x1 - x0) - (y1 - y0)) <= rtol * max(abs(x1 - x0), abs(y1 - y0))


def robust_region(points, quantile=0.01, pad=0.15, square=None):
    """A region around the bulk of `points [N, 2]` (quantiles, padded); square when
    `square`, by default when the two coordinates are on similar scales
    (`equal_scales`)."""
    pts = _finite_rows(points)
    if len(pts) == 0:
        return (-3.0, 3.0, -3.0, 3.0)
    lo = np.quantile(pts, quantile, axis=0)
    hi = np.quantile(pts, 1 - quantile, axis=0)
    square = equal_scales(pts, quantile) if square is None else square
    return pad_region((lo[0], hi[0], lo[1], hi[1]), pad, square)


def covering_region(lines, points, quantile=0.01, pad=0.04):
    """A region holding every finite point of `lines [N, 2]` (a grid: all of it)
    and the bulk of `points [M, 2]` (their `quantile` to `1 - quantile` range),
    grown by `pad` of its size on each side; square when the points' two
    coordinates are on similar scales (`equal_scales`)."""
    lows, highs = [], []
    for pts, q in ((lines, 0.0), (points, quantile)):
        pts = np.asarray(pts, np.float64).reshape(-1, 2)
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        if len(pts):
            lows.append(np.quantile(pts, q, axis=0))
            highs.append(np.quantile(pts, 1 - q, axis=0))
    if not lows:
        return (-3.0, 3.0, -3.0, 3.0)
    lo, hi = np.min(lows, axis=0), np.max(highs, axis=0)
    return pad_region((lo[0], hi[0], lo[1], hi[1]), pad, equal_scales(points, quantile))


def pad_region(region, pad=0.15, square=True):
    """Grows `region` by `pad` of its size on each side (and makes it square)."""
    x0, x1, y0, y1 = map(float, region)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, h = float(shown_width(x1 - x0, cx)), float(shown_width(y1 - y0, cy))
    if square:
        w = h = max(w, h)
    w, h = w * (1 + 2 * pad), h * (1 + 2 * pad)
    return (cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2)


def shown_width(width, centre):
    """`width` (of a coordinate's values around `centre`), or where float32 cannot
    draw it (a single value; a spread under 1e-4 of `centre`), 1e-3 (or 1e-3 of
    `|centre|`, when that is more). Data in small units (returns of 3e-5) keep
    their own width."""
    width, centre = np.asarray(width, np.float64), np.abs(np.asarray(centre, np.float64))
    return np.where(width > np.maximum(1e-4 * centre, 1e-12), width,
                    np.maximum(1e-3, 1e-3 * centre))


def image_shape_for(event_dim):
    """`(h, w)` of a square image with `event_dim` pixels (at least 4x4), or None."""
    side = int(round(event_dim ** 0.5))
    return (side, side) if side >= 4 and side * side == event_dim else None


def tile_images(rows, shape, columns=None, gap=1, fill=np.nan):
    """`rows [n, h*w]` as one picture of `n` images `shape = (h, w)` in a grid.

    The images are laid out left to right, top to bottom, `columns` per row
    (default: a square-ish grid), `gap` pixels apart (filled with `fill`).
    Returns `[H, W]` with its first row at the *bottom* (pyqtgraph's y axis
    points up), so the picture shows the way the images are read: image 0
    top left, each image's row 0 on top.
    """
    rows = np.asarray(rows, np.float32)
    h, w = shape
    n = len(rows)
    if rows.ndim != 2 or rows.shape[1] != h * w:
        raise ValueError(f"rows must have shape [n, {h * w}] for images of shape {shape}; "
                         f"received {rows.shape}.")
    columns = columns or max(1, int(np.ceil(np.sqrt(n))))
    lines = max(1, -(-n // columns))
    out = np.full((lines * (h + gap) - gap, columns * (w + gap) - gap), fill, np.float32)
    for k, image in enumerate(rows.reshape(n, h, w)):
        r, c = divmod(k, columns)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = image
    return out[::-1]


def tile_index(x, y, n, shape, columns=None, gap=1):
    """Which of the `n` pictures of `tile_images(rows, shape, columns, gap)` covers the
    point `(x, y)` of the drawn picture (pixel units, y up): its index, or None in a
    gap or outside."""
    h, w = shape
    columns = columns or max(1, int(np.ceil(np.sqrt(n))))
    lines = max(1, -(-n // columns))
    top = lines * (h + gap) - gap - y            # distance from the picture's top edge
    if x < 0 or top < 0:
        return None
    r, dy = divmod(top, h + gap)
    c, dx = divmod(x, w + gap)
    k = int(r) * columns + int(c)
    if dy >= h or dx >= w or c >= columns or k >= n:
        return None
    return k


def side_by_side(left, right, gap):
    """Two pictures (`tile_images` output, first row at the bottom) next to each other,
    `gap` empty columns apart, top-aligned."""
    h = max(len(left), len(right))
    pad = lambda a: np.vstack([np.full((h - len(a), a.shape[1]), np.nan, np.float32), a])
    return np.hstack([pad(left), np.full((h, gap), np.nan, np.float32), pad(right)])

