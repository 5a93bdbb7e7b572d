"""Pictures of a flow as RGB arrays, with no plotting library: for TensorBoard and PNGs.

Each picture is a `uint8` array `[height, width, 3]` whose first row is the
top of the picture (the largest y), as image files and `tf.summary.image`
expect; `density_picture` and `pairs_picture` return it in a tuple with
what its colours mean:

- `density_picture(flow, region)`: `log p(x)` of a 2-D flow on a grid over
  `region`, in the viridis colours from `max - span` (dark) to the grid's
  maximum (bright);
- `samples_picture(points, region)`: a 2-D histogram of points (samples or
  data; two chosen dimensions of wider ones), `log(1 + count)` in the same
  colours, so a sparse tail stays visible;
- `image_grid(rows, shape)`: rows of image-shaped flows (`[n, h * w]`) as a
  grid of grey pictures between two grey levels;
- `pairs_picture(samples, data)`: every pair of chosen coordinates, samples
  below the diagonal and data above it as 2-D histograms, and each
  coordinate's marginal histograms on the diagonal (a corner plot).

`region_of(points)` picks a region that holds nearly all of `points`;
`side_by_side(pictures)` puts pictures in a row; `encode_png(picture)` gives
a PNG file's bytes.

Example:

```python
picture, (low, high) = kerasflows.pictures.density_picture(flow, region=(-4, 4, -4, 4))
open("density.png", "wb").write(kerasflows.pictures.encode_png(picture))
```
"""

import math
import operator

import numpy as np

from kerasflows.layers.checks import check_float, check_positive_int

__all__ = ["density_picture", "range_text", "draws_density", "samples_picture", "image_grid", "tile",
           "pairs_picture", "pairs_ranges", "valid_pairs", "MAX_PAIRS", "SAMPLES_COLOUR", "DATA_COLOUR",
           "side_by_side", "region_of", "region_text", "colorize", "encode_png",
           "pixel_centres", "VIRIDIS", "GAP_COLOUR", "IMAGES_SHOWN", "check_levels",
           "check_image_shape"]

#: viridis (van der Walt & Smith, matplotlib 2.0) at ten equally spaced stops.
VIRIDIS = np.array([[0x44, 0x01, 0x54], [0x48, 0x28, 0x78], [0x3E, 0x4A, 0x89],
                    [0x31, 0x68, 0x8E], [0x26, 0x82, 0x8E], [0x1F, 0x9E, 0x89],
                    [0x35, 0xB7, 0x79], [0x6D, 0xCD, 0x59], [0xB4, 0xDE, 0x2C],
                    [0xFD, 0xE7, 0x25]], np.float64)
#: Between pictures put side by side: the visualizer's background.
GAP_COLOUR = (22, 24, 28)
#: The most coordinates `pairs_picture` draws (a 6 x 6 grid).
MAX_PAIRS = 6
#: The marginals' colours in `pairs_picture` (the visualizer's samples and data).
SAMPLES_COLOUR, DATA_COLOUR = (0xFF, 0xB7, 0x4D), (0x90, 0xA4, 0xAE)
#: Samples of an image-shaped flow drawn as one grid of pictures (8 x 8), by
#: `kerasflows.callbacks.FlowImages` and `kerasflows plot`.
IMAGES_SHOWN = 64


def colorize(values, low, high):
    """`values` mapped linearly from `low` (first colour) to `high` (last) through
    `VIRIDIS`; values outside are clipped, NaN takes the first colour. Returns
    `uint8 [..., 3]`."""
    values = np.asarray(values, np.float64)
    t = (values - low) / max(float(high - low), 1e-12)
    t = np.clip(np.where(np.isnan(t), 0.0, t), 0.0, 1.0) * (len(VIRIDIS) - 1)
    i = np.minimum(np.floor(t).astype(int), len(VIRIDIS) - 2)
    f = (t - i)[..., None]
    return np.round(VIRIDIS[i] * (1 - f) + VIRIDIS[i + 1] * f).astype(np.uint8)


def _check_region(region):
    try:
        x0, x1, y0, y1 = (float(v) for v in region)
    except (TypeError, ValueError):
        raise ValueError("region must be (xmin, xmax, ymin, ymax); "
                         f"received region={region!r}") from None
    if not (np.isfinite([x0, x1, y0, y1]).all() and x0 < x1 and y0 < y1):
        raise ValueError("region must be finite with xmin < xmax and ymin < ymax; "
                         f"received region={region!r}")
    return x0, x1, y0, y1


def _check_resolution(resolution):
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) \
            or not 2 <= resolution <= 4096:
        raise ValueError(f"resolution must be an integer in [2, 4096]; "
                         f"received resolution={resolution!r}")
    return int(resolution)


def check_span(span):
    """`span` as a float, if it is a finite number > 0; else a ValueError naming it."""
    return check_float("span", span, lambda s: s > 0, "of nats > 0")


def check_integers(name, values):
    """`values` as a tuple of ints, if each is an integer (a NumPy integer too, not a
    bool or a float, which `int()` would take or truncate); else a ValueError naming
    `name`."""
    try:
        items = tuple(values)
        if any(isinstance(v, (bool, np.bool_)) for v in items):
            raise TypeError
        return tuple(operator.index(v) for v in items)
    except TypeError:
        raise ValueError(f"`{name}` must be integers. Received: {name}={values!r}") from None


def pixel_centres(region, resolution):
    """The `[resolution ** 2, 2]` points at the pixel centres of a picture of
    `region`, row by row from the top row (largest y) down."""
    x0, x1, y0, y1 = _check_region(region)
    r = _check_resolution(resolution)
    xs = x0 + (np.arange(r) + 0.5) * (x1 - x0) / r
    ys = y1 - (np.arange(r) + 0.5) * (y1 - y0) / r
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)


def draws_density(flow):
    """True if `density_picture` can draw `flow`: 2-D, and every layer has an inverse."""
    return flow.event_dim == 2 and not any(l.forward_only for l in flow.flow_layers)


def density_picture(flow, region, resolution=128, context=None, span=10.0, dims=(0, 1)):
    """`log p(x)` of a 2-D `flow` on `region = (xmin, xmax, ymin, ymax)`.

    Colours run from `max - span` nats (dark; lower values, and points
    outside the support, take the darkest colour) to the grid's maximum;
    `span` is a finite number > 0.
    A conditional flow takes one `context` row, `[C]` or `[1, C]`.
    `dims` are the coordinates across and up, as in `samples_picture`:
    `(1, 0)` puts the second coordinate across.

    Returns:
        `(picture, (low, high))`: `uint8 [resolution, resolution, 3]` and
        the log-densities of its darkest and brightest colours (NaN, NaN
        when no log-density on the grid is finite: the picture is all dark;
        `range_text` says either in words).

    Raises:
        ValueError: a flow that is not 2-D, or a bad `region`, `resolution`,
            `span` or `dims`.
    """
    if flow.event_dim != 2:
        raise ValueError(f"density_picture draws 2-D flows; this flow has event_dim="
                         f"{flow.event_dim} (samples_picture shows two of its dimensions).")
    dims = check_integers("dims", dims)
    if dims not in ((0, 1), (1, 0)):
        raise ValueError(f"dims must be (0, 1) or (1, 0) for a 2-D flow; received dims={dims!r}")
    span = check_span(span)
    points = pixel_centres(region, resolution)[:, list(np.argsort(dims))]
    if context is not None:      # one row, shared by every point (the flow checks its width)
        given = np.asarray(context, flow.dtype)
        if given.ndim > 2 or (given.ndim == 2 and len(given) != 1):
            raise ValueError(f"density_picture draws the flow at one context, [C] or [1, C]; "
                             f"received shape {given.shape}.")
        context = given.reshape(1, -1)
    log_p = np.asarray(flow.log_prob(points, context=context), np.float64)
    finite = log_p[np.isfinite(log_p)]
    high = float(finite.max()) if finite.size else 0.0
    low = high - span
    picture = colorize(np.where(np.isfinite(log_p), log_p, np.nan), low, high)
    if not finite.size:             # every pixel dark: no range was measured
        low = high = math.nan
    return picture.reshape(resolution, resolution, 3), (low, high)


def range_text(low, high):
    """`density_picture`'s range in words: "log p(x) from -8.21 (dark) to 1.79
    (bright) nats", or that no log-density on the grid was finite."""
    if math.isnan(low) or math.isnan(high):
        return "no finite log p(x) in the region (every pixel dark)"
    return f"log p(x) from {low:.2f} (dark) to {high:.2f} (bright) nats"


def samples_picture(points, region, resolution=128, dims=(0, 1)):
    """A 2-D histogram of `points [n, D]` (dimensions `dims`) over `region`,
    coloured by `log(1 + count)` from 0 (dark) to the fullest pixel (bright);
    points outside `region` are not drawn. Returns `uint8 [resolution, resolution, 3]`."""
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] < 2:
        raise ValueError(f"points must have shape [n, D] with D >= 2; received {points.shape}.")
    dims = check_integers("dims", dims)
    if len(dims) != 2 or not (0 <= min(dims) and max(dims) < points.shape[1]
                              and dims[0] != dims[1]):
        raise ValueError(f"dims must be two different dimensions of the {points.shape[1]}-D "
                         f"points; received dims={dims!r}")
    i, j = dims
    x0, x1, y0, y1 = _check_region(region)
    r = _check_resolution(resolution)
    counts, _, _ = np.histogram2d(points[:, j], points[:, i], bins=r,
                                  range=[[y0, y1], [x0, x1]])
    level = np.log1p(counts[::-1])                 # first row: the largest y
    return colorize(level, 0.0, max(float(level.max()), 1e-12))


def tile(rows, shape, columns=None, gap=1, fill=np.nan):
    """`rows [n, h*w]` as one `[H, W]` array of `n` images `shape = (h, w)` in a
    grid, image 0 top left, left to right then top to bottom, `columns` per
    row (default: a square-ish grid), `gap` pixels apart filled with `fill`."""
    columns = check_positive_int("columns", columns, allow_none=True)
    rows = np.asarray(rows, np.float32)
    h, w = shape
    if rows.ndim != 2 or rows.shape[1] != h * w:
        raise ValueError(f"rows must have shape [n, {h * w}] for images of shape {shape}; "
                         f"received {rows.shape}.")
    n = len(rows)
    columns = columns if columns is not None else max(1, int(np.ceil(np.sqrt(n))))
    lines = max(1, -(-n // columns))
    cells = np.full((lines * columns, h + gap, w + gap), fill, np.float32)
    cells[:n, :h, :w] = rows.reshape(n, h, w)
    grid = cells.reshape(lines, columns, h + gap, w + gap).transpose(0, 2, 1, 3)
    return grid.reshape(lines * (h + gap), columns * (w + gap))[:-gap or None, :-gap or None]


def check_levels(levels, name="levels"):
    """`levels` `(black, white)` as two floats, if they are two different finite
    numbers; else a ValueError naming `name`."""
    try:
        black, white = (float(v) for v in levels)
        ok = np.isfinite(white - black) and white != black
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"`{name}` must be two different finite values (black, white). "
                         f"Received: {name}={levels!r}")
    return black, white


def check_image_shape(image_shape, name="image_shape"):
    """`image_shape` as `(height, width)` ints, if both are integers >= 1 (NumPy
    integers too; not bools or floats, which were truncated); else a ValueError
    naming it as `name`."""
    try:
        shape = check_integers(name, image_shape)
    except (ValueError, TypeError):
        shape = ()
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"`{name}` must be (height, width) of positive integers; "
                         f"received {image_shape!r}.")
    return shape


def image_grid(rows, shape, levels=None, columns=None, scale=1):
    """Image-shaped rows `[n, h*w]` as grey pictures in a grid: `levels = (black,
    white)` (default: the rows' own minimum and maximum; white below black draws
    the greys inverted), each pixel drawn `scale` x `scale`, a mid-grey line
    (`max(1, scale // 2)` wide) between pictures; a NaN pixel is drawn red.
    `scale` and `columns` are integers >= 1. Returns `uint8 [H, W, 3]`."""
    rows = np.asarray(rows, np.float64)
    # (np.sqrt(64) for 8 was a TypeError deep in NumPy, (8,) and 64 unpacking errors)
    h, w = shape = check_image_shape(shape, "shape")
    if rows.ndim != 2 or rows.shape[1] != h * w or not len(rows):
        raise ValueError(f"rows must have shape [n, {h * w}], n >= 1, for images of shape "
                         f"{shape}; received {rows.shape}.")
    black, white = (check_levels(levels) if levels is not None
                    else (np.nanmin(rows), np.nanmax(rows)))
    span = float(white) - float(black)
    # signed: reversed levels invert the greys (a span of 1e-12 made them black or white)
    grey = np.clip((rows - black) / (span if span != 0 else 1e-12), 0.0, 1.0)
    scale = check_positive_int("scale", scale)
    big = np.repeat(np.repeat(grey.reshape(-1, h, w), scale, 1), scale, 2)
    tiled = tile(big.reshape(len(rows), -1), (h * scale, w * scale), columns,
                 gap=max(1, scale // 2), fill=0.5)
    nan = np.isnan(tiled)
    picture = np.repeat(np.round(255 * np.where(nan, 0.0, tiled)).astype(np.uint8)[..., None],
                        3, axis=2)
    picture[nan] = (255, 0, 0)
    return picture


def region_text(region, dims=(0, 1), names=None):
    """`region` of the coordinates `dims` in words: "on x1 in [a, b], x2 in [c, d]"
    (the data's column `names`, where given, for x1, x2, ...)."""
    x0, x1, y0, y1 = region
    name = lambda d: names[d] if names else f"x{d + 1}"
    return (f"on {name(dims[0])} in [{x0:.3g}, {x1:.3g}], "
            f"{name(dims[1])} in [{y0:.3g}, {y1:.3g}]")


def side_by_side(pictures, gap=8, colour=GAP_COLOUR):
    """RGB pictures `[H_i, W_i, 3]` left to right, `gap` pixels apart, on `colour`
    (shorter pictures at the top). Returns `uint8 [max H_i, sum W_i + gaps, 3]`."""
    if not len(pictures):
        raise ValueError("side_by_side needs at least one picture; received none.")
    height = max(p.shape[0] for p in pictures)
    width = sum(p.shape[1] for p in pictures) + gap * (len(pictures) - 1)
    out = np.empty((height, width, 3), np.uint8)
    out[:] = colour
    left = 0
    for p in pictures:
        out[:p.shape[0], left:left + p.shape[1]] = p
        left += p.shape[1] + gap
    return out


def region_of(points, dims=(0, 1), coverage=0.995, margin=0.15):
    """`(xmin, xmax, ymin, ymax)` around the central `coverage` of `points` in
    each of `dims`, widened by `margin` of its size on every side.

    Raises:
        ValueError: for a `coverage` outside (0, 1], a negative or non-finite
            `margin`, `dims` that are not two columns of `points`, or no finite points.
    """
    coverage = check_float("coverage", coverage, lambda c: 0 < c <= 1, "in (0, 1]")
    margin = check_float("margin", margin, lambda m: m >= 0, ">= 0")
    points = np.asarray(points, np.float64)
    dims = check_integers("dims", dims)
    if points.ndim != 2 or len(dims) != 2 or not all(0 <= d < points.shape[1] for d in dims):
        raise ValueError(f"region_of needs points [n, D] and two of their columns as dims; "
                         f"received shape {points.shape} and dims={dims}.")
    points = points[:, list(dims)]
    points = points[np.isfinite(points).all(1)]
    if not len(points):
        raise ValueError("region_of needs finite points; received none.")
    q = (1.0 - coverage) / 2
    lo, hi = np.quantile(points, q, axis=0), np.quantile(points, 1 - q, axis=0)
    pad = margin * _shown_width(hi - lo, (lo + hi) / 2)
    return (float(lo[0] - pad[0]), float(hi[0] + pad[0]),
            float(lo[1] - pad[1]), float(hi[1] + pad[1]))


def _shown_width(width, centre):
    """`width` (of a coordinate's values around `centre`), or where float32 cannot
    draw it (a single value; a spread under 1e-4 of `centre`), 1e-3 (or 1e-3 of
    `|centre|`, when that is more). Data in small units (returns of 3e-5) keep
    their own width."""
    width, centre = np.asarray(width, np.float64), np.abs(np.asarray(centre, np.float64))
    return np.where(width > np.maximum(1e-4 * centre, 1e-12), width,
                    np.maximum(1e-3, 1e-3 * centre))


def valid_pairs(dims, event_dim):
    """Whether `dims` are 1 to `MAX_PAIRS` different coordinates in 0..event_dim-1."""
    return (0 < len(dims) <= MAX_PAIRS and len(set(dims)) == len(dims)
            and all(0 <= d < event_dim for d in dims))


def pairs_ranges(points, dims, coverage=0.995, margin=0.15):
    """`[(lo, hi), ...]`: the range of each coordinate of `dims` around the central
    `coverage` of `points`, widened by `margin` (as `region_of`)."""
    return [region_of(points, (d, d), coverage, margin)[:2] for d in dims]


def _marginal_picture(columns, lo, hi, size, bins):
    """Histograms of `columns` (samples, then data or None) on `bins` equal bins of
    `[lo, hi]`, each bin the fraction of the column's finite values in it (values
    outside the range count in the whole), both on the taller one's scale: the
    samples' as filled bars, the data's as a line along the bars' tops; `uint8
    [size, size, 3]`."""
    edges = np.linspace(lo, hi, bins + 1)
    heights = []
    for column in columns:
        if column is None:
            heights.append(None)
            continue
        values = np.asarray(column, np.float64)
        values = values[np.isfinite(values)]
        counts = np.histogram(values, edges)[0] if len(values) else np.zeros(bins)
        heights.append(counts / max(len(values), 1))
    top = max(float(h.max()) for h in heights if h is not None) or 1.0
    picture = np.empty((size, size, 3), np.uint8)
    picture[:] = GAP_COLOUR
    column_bin = np.minimum((np.arange(size) * bins) // size, bins - 1)
    rows = np.arange(size)[:, None]
    for h, colour, filled in zip(heights, (SAMPLES_COLOUR, DATA_COLOUR), (True, False)):
        if h is None:
            continue
        level = size - 1 - np.round(h[column_bin] / top * (size - 1) * 0.92).astype(int)
        if filled:
            picture[rows >= level[None, :]] = colour
        else:       # the step's tops and its rises between bins, 2 pixels wide
            lower = np.minimum(level, np.r_[level[1:], level[-1]])
            upper = np.maximum(level, np.r_[level[1:], level[-1]])
            on = (rows >= lower[None, :] - 1) & (rows <= upper[None, :])
            picture[on] = colour
    return picture


def pairs_picture(samples, data=None, dims=None, cell=128, ranges=None):
    """Every pair of the coordinates `dims` (default: the first `MAX_PAIRS`) in a
    grid of `cell`-pixel pictures: below the diagonal, row i against column j, a
    2-D histogram of `samples` (as `samples_picture`); above it, of `data` (each
    data cell mirrors a samples cell; blank without data); on the diagonal each
    coordinate's marginal, the samples' histogram filled (`SAMPLES_COLOUR`) and
    the data's as a line (`DATA_COLOUR`) on the same bins. `ranges` (`[(lo,
    hi)]` per coordinate) default to `pairs_ranges` of the data, else of the
    samples. Returns `(uint8 [H, W, 3], ranges)`."""
    samples = np.asarray(samples, np.float64)
    if samples.ndim != 2:
        raise ValueError(f"samples must have shape [n, D]; received {samples.shape}.")
    D = samples.shape[1]
    dims = list(range(min(D, MAX_PAIRS))) if dims is None else list(check_integers("dims", dims))
    if not valid_pairs(dims, D):
        raise ValueError(f"dims must be 1 to {MAX_PAIRS} different coordinates of the {D}-D "
                         f"points (from 0); received dims={dims!r}")
    if data is not None:
        data = np.asarray(data, np.float64)
        if data.ndim != 2 or data.shape[1] != D:
            raise ValueError(f"data must have shape [n, {D}] like the samples; received "
                             f"{data.shape}.")
    if ranges is None:
        ranges = pairs_ranges(samples if data is None else data, dims)
    else:
        ranges = _check_ranges(ranges, dims)
    cell = _check_resolution(cell)
    k, gap = len(dims), 4
    out = np.empty((k * cell + (k - 1) * gap, k * cell + (k - 1) * gap, 3), np.uint8)
    out[:] = GAP_COLOUR
    for i, di in enumerate(dims):
        for j, dj in enumerate(dims):
            points = samples if i > j else data
            if i == j:
                columns = [samples[:, di], None if data is None else data[:, di]]
                picture = _marginal_picture(columns, *ranges[i], cell, max(8, cell // 4))
            elif points is None:
                continue
            else:
                region = (*ranges[j], *ranges[i])
                picture = samples_picture(points[:, [dj, di]], region, cell)
            top, left = i * (cell + gap), j * (cell + gap)
            out[top:top + cell, left:left + cell] = picture
    return out, [tuple(map(float, r)) for r in ranges]


def _check_ranges(ranges, dims):
    """`ranges` as one `(lo, hi)` of floats per coordinate of `dims`, finite with
    lo < hi; else a ValueError naming them (NumPy's errors said "bins must increase
    monotonically" or "list index out of range")."""
    try:
        checked = [(float(lo), float(hi)) for lo, hi in ranges]
    except (TypeError, ValueError):
        checked = None
    if (checked is None or len(checked) != len(dims)
            or not all(np.isfinite(r).all() and r[0] < r[1] for r in checked)):
        raise ValueError(f"ranges must be one (lo, hi) per coordinate of dims={dims} "
                         f"({len(dims)}), finite with lo < hi; received ranges={ranges!r}")
    return checked


def encode_png(picture):
    """The bytes of a PNG file of `picture` (`uint8 [H, W, 3]`, as the functions here
    make them; a ValueError for another shape or dtype: floats in [0, 1] were cast
    to black, 300 wrapped to 44)."""
    import tensorflow as tf
    picture = np.asarray(picture)
    if picture.dtype != np.uint8 or picture.ndim != 3 or picture.shape[2] != 3:
        raise ValueError(f"picture must be uint8 [H, W, 3] (RGB); received {picture.dtype} "
                         f"{picture.shape}.")
    return tf.io.encode_png(tf.constant(picture)).numpy()
