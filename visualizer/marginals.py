"""NumPy helpers of the Pairs view (no TensorFlow, no Qt): which coordinates
to show, each coordinate's range and its marginal histograms.

Example:

```python
ranges = coordinate_ranges(data)                     # [D, 2]
edges, densities = marginal_densities([samples[:, 0], data[:, 0]], *ranges[0])
```
"""

import numpy as np

from visualizer.geometry import shown_width

__all__ = ["coordinate_ranges", "marginal_densities", "default_coordinates", "most_varied",
           "MAX_SHOWN", "BINS"]

#: The most coordinates the Pairs view shows at once (a 6 x 6 corner of plots).
MAX_SHOWN = 6
#: Bins of each marginal histogram.
BINS = 40


def coordinate_ranges(points, quantile=0.01, pad=0.15):
    """Each coordinate's range around the bulk of `points [N, D]`: from the
    `quantile` to the `1 - quantile` quantile of its finite values, grown by
    `pad` of the width on each side, `[D, 2]`. A coordinate without finite
    values gets (-3, 3); one with a single value, a width of 1e-3 around it
    (`geometry.shown_width`)."""
    points = np.asarray(points, np.float64)
    if points.ndim != 2:
        raise ValueError(f"points must have shape [N, D]; received shape {points.shape}.")
    ranges = np.tile([-3.0, 3.0], (points.shape[1], 1))
    for d in range(points.shape[1]):
        values = points[:, d][np.isfinite(points[:, d])]
        if len(values):
            lo, hi = np.quantile(values, [quantile, 1 - quantile])
            centre = (lo + hi) / 2
            width = float(shown_width(hi - lo, centre)) * (1 + 2 * pad)
            ranges[d] = centre - width / 2, centre + width / 2
    return ranges


def marginal_densities(columns, lo, hi, bins=BINS):
    """Histograms of each of `columns` (arrays of one coordinate's values, e.g.
    the flow's samples and the data) on the same `bins` equal bins over
    `[lo, hi]`, each normalised as a density of all its finite values (the
    values outside the range count in the normaliser, not in a bin, so two
    histograms compare as the marginals they estimate). Returns `(edges
    [bins + 1], densities [len(columns), bins])`."""
    if not hi > lo:
        raise ValueError(f"the range needs lo < hi; received lo={lo}, hi={hi}.")
    edges = np.linspace(lo, hi, bins + 1)
    densities = np.zeros((len(columns), bins))
    for k, column in enumerate(columns):
        values = np.asarray(column, np.float64).ravel()
        values = values[np.isfinite(values)]
        if len(values):
            counts, _ = np.histogram(values, edges)
            densities[k] = counts / (len(values) * (edges[1] - edges[0]))
    return edges, densities


def default_coordinates(event_dim, reference=None, image=False, limit=MAX_SHOWN):
    """The coordinates the Pairs view shows first: all of them up to `limit`;
    for wider flows the first `limit`, or for an image-shaped flow the `limit`
    pixels whose `reference` values vary most (its first ones are often a
    blank border), in index order."""
    if event_dim <= limit:
        return list(range(event_dim))
    if image and reference is not None and len(reference) > 1:
        return most_varied(reference, limit)
    return list(range(limit))


def most_varied(reference, k):
    """The `k` coordinates whose `reference [N, D]` values spread most (standard
    deviation; the first on ties), in index order."""
    spread = np.nan_to_num(np.nanstd(np.asarray(reference, np.float64), axis=0))
    return sorted(int(d) for d in np.argsort(-spread, kind="stable")[:k])
