"""The Pairs view's NumPy helpers: ranges, marginal histograms, the first coordinates."""

import numpy as np
import pytest

from visualizer import marginals


def test_coordinate_ranges_hold_the_bulk_of_each_column_padded():
    rng = np.random.default_rng(0)
    points = np.c_[rng.uniform(0, 1, 10_000), rng.uniform(100, 300, 10_000)]
    points[0] = [1e9, np.nan]                       # an outlier and a NaN change nothing
    ranges = marginals.coordinate_ranges(points)
    assert ranges.shape == (2, 2)
    np.testing.assert_allclose(ranges[0], [0.01 - 0.147, 0.99 + 0.147], atol=0.01)
    np.testing.assert_allclose(ranges[1], [102 - 29.4, 298 + 29.4], atol=2)
    flat = marginals.coordinate_ranges(np.array([[5.0, np.nan], [5.0, np.nan]]))
    assert flat[0, 0] < 5.0 < flat[0, 1] and list(flat[1]) == [-3.0, 3.0]
    small = marginals.coordinate_ranges(rng.normal(5e-7, 3e-5, (10_000, 1)))
    assert 1.2 < np.ptp(small) / (2 * 2.326 * 3e-5) < 1.4       # not a floor of 1e-3
    with pytest.raises(ValueError, match=r"shape \[N, D\]; received shape \(3,\)"):
        marginals.coordinate_ranges(np.zeros(3))


def test_marginal_densities_share_bins_and_count_the_values_outside():
    inside = np.linspace(0.05, 0.95, 1000)
    half_out = np.r_[inside, np.full(1000, 7.0), [np.nan]]
    edges, dens = marginals.marginal_densities([inside, half_out, []], 0.0, 1.0, bins=10)
    np.testing.assert_allclose(edges, np.linspace(0, 1, 11))
    widths = np.diff(edges)
    assert np.sum(dens[0] * widths) == pytest.approx(1.0)
    assert np.sum(dens[1] * widths) == pytest.approx(0.5)    # half the values lie outside
    assert not dens[2].any()
    with pytest.raises(ValueError, match="lo < hi; received lo=1.0, hi=1.0"):
        marginals.marginal_densities([inside], 1.0, 1.0)


def test_default_coordinates():
    assert marginals.default_coordinates(4) == [0, 1, 2, 3]
    assert marginals.default_coordinates(10) == [0, 1, 2, 3, 4, 5]
    reference = np.zeros((50, 10))
    reference[:, [9, 2, 7]] = np.random.default_rng(1).normal(size=(50, 3)) * [3, 2, 1]
    chosen = marginals.default_coordinates(10, reference, image=True, limit=3)
    assert chosen == [2, 7, 9]                       # the most varied, in index order
    assert marginals.default_coordinates(10, reference, limit=3) == [0, 1, 2]
