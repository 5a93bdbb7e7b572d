"""kerasflows.datasets: the toy densities, digits, and their true log-densities."""

import re
import warnings

import numpy as np
import pytest
import tensorflow_probability as tfp
from distribution_checks import ks_pvalue, student_t, t_cdf

from kerasflows import datasets


@pytest.mark.parametrize("name", datasets.NAMES)
def test_load_is_reproducible_float32_and_bounded(name):
    n = 500
    x = datasets.load(name, n=n, seed=3)
    assert x.dtype == np.float32 and x.shape == (n, {"digits": 64, "moons4d": 4}.get(name, 2))
    np.testing.assert_array_equal(x, datasets.load(name, n=n, seed=3))
    assert not np.array_equal(x, datasets.load(name, n=n, seed=4))
    assert np.all(np.isfinite(x))
    assert np.abs(x).max() < 6.0 or name == "heavy_tails"      # (its tails are the point)


def test_unknown_name_and_bad_n_are_named():
    with pytest.raises(ValueError, match="Unknown dataset 'mons'.*moons.*digits"):
        datasets.load("mons")
    with pytest.raises(ValueError, match="n=0"):
        datasets.load("moons", n=0)
    with pytest.raises(ValueError, match="1797 images"):
        datasets.load("digits", n=5000)
    with pytest.raises(ValueError, match="pinwheel"):
        datasets.true_log_prob("pinwheel", np.zeros((2, 2)))


@pytest.mark.parametrize("name,h", [("moons", 0.15), ("eight_gaussians", 0.15),
                                    ("checkerboard", 0.2), ("rings", 0.1), ("two_spirals", 0.15)])
def test_true_log_prob_is_a_normalised_density(name, h):
    # midpoint sums over [-6, 6]^2 with cells of the narrowest noise std (Riemann
    # sums of Gaussians converge fast; no point lies on a checkerboard edge)
    g = -6 + h * (np.arange(round(12 / h)) + 0.5)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    lp = datasets.true_log_prob(name, np.stack([xx.ravel(), yy.ravel()], 1))
    mass = np.exp(lp).sum() * h * h
    assert abs(mass - 1.0) < 0.02, mass


def test_moons4d_is_moons_with_two_columns_that_depend_on_them():
    x = datasets.load("moons4d", n=4000, seed=5)
    np.testing.assert_array_equal(x[:, :2], datasets.load("moons", n=4000, seed=5))
    x = x.astype(np.float64)
    r3 = x[:, 2] - 0.5 * x[:, 0] * x[:, 1]
    r4 = x[:, 3] - np.exp(0.6 * x[:, 1])
    assert abs(r3.std() - 0.2) < 0.01 and abs(r4.std() - 0.15) < 0.01
    assert abs(np.corrcoef(r3, r4)[0, 1]) < 0.05
    # given x1, x2 the last two columns' density integrates to one (midpoint sums
    # over 6 standard deviations each side of their means)
    h = 0.04
    cells = h * (np.arange(-30, 30) + 0.5)
    for x12 in ([0.5, 0.3], [-1.0, -0.2]):
        aa, bb = np.meshgrid(0.5 * x12[0] * x12[1] + 1.0 * cells,
                             np.exp(0.6 * x12[1]) + 0.75 * cells, indexing="ij")
        pts = np.c_[np.tile(x12, (aa.size, 1)), aa.ravel(), bb.ravel()]
        lp = datasets.true_log_prob("moons4d", pts) - datasets.true_log_prob("moons", pts[:, :2])
        assert abs(np.exp(lp).sum() * h * h * 0.75 - 1.0) < 1e-3
    entropy = -datasets.true_log_prob("moons4d", x[:1000]).mean()
    moons = -datasets.true_log_prob("moons", x[:1000, :2]).mean()
    assert entropy - moons == pytest.approx(np.log(2 * np.pi * np.e * 0.2 * 0.15), abs=0.05)


def test_samples_are_where_the_density_is():
    x = datasets.load("checkerboard", n=2000)
    assert np.all(np.isfinite(datasets.true_log_prob("checkerboard", x)))
    x = datasets.load("eight_gaussians", n=2000).astype(np.float64)
    far = x + 10.0
    assert datasets.true_log_prob("eight_gaussians", x).mean() > \
        datasets.true_log_prob("eight_gaussians", far).mean() + 10


def test_digits_are_standardised_with_one_scalar():
    x = datasets.load("digits")
    assert x.shape == (1797, 64)
    assert abs(x.mean()) < 0.05 and abs(x.std() - 1.0) < 0.05


def test_conditional_ring_radius_draws_and_its_exact_density():
    x, c = datasets.load_conditional("ring_radius", n=4000, seed=2)
    assert x.dtype == c.dtype == np.float32 and x.shape == (4000, 2) and c.shape == (4000, 1)
    again = datasets.load_conditional("ring_radius", n=4000, seed=2)
    np.testing.assert_array_equal(x, again[0])
    np.testing.assert_array_equal(c, again[1])
    low, high = datasets.RING_RADIUS_RANGE
    assert low <= c.min() and c.max() <= high
    # the points lie on the ring of their own radius (noise std 0.1)
    assert np.abs(np.linalg.norm(x, axis=1) - c[:, 0]).max() < 0.6
    h = 0.05
    g = -6 + h * (np.arange(round(12 / h)) + 0.5)
    grid = np.stack([a.ravel() for a in np.meshgrid(g, g, indexing="ij")], 1)
    for r in (1.0, 2.7, 4.0):
        lp = datasets.true_conditional_log_prob("ring_radius", grid, np.full((len(grid), 1), r))
        assert abs(np.exp(lp).sum() * h * h - 1.0) < 1e-3, r
    # each point is likelier under its own radius than under another one
    own = datasets.true_conditional_log_prob("ring_radius", x, c)
    other = datasets.true_conditional_log_prob("ring_radius", x, np.clip(c + 1.0, low, high + 1))
    assert np.mean(own > other) > 0.99
    with pytest.raises(ValueError, match="Unknown conditional dataset 'rings'.*ring_radius"):
        datasets.load_conditional("rings")
    with pytest.raises(ValueError, match=r"context \[N, 1\]"):
        datasets.true_conditional_log_prob("ring_radius", x, c[:10])


def test_the_shipped_digits_are_the_uci_test_set():
    """kerasflows/data/digits.npz: the 1,797 images of UCI optdigits' test set, grey
    levels 0..16, with the set's published count of each digit."""
    pixels, labels = datasets.digit_pixels()
    assert pixels.shape == (1797, 64) and labels.shape == (1797,)
    np.testing.assert_array_equal(pixels, np.round(pixels))
    assert pixels.min() == 0 and pixels.max() == 16
    np.testing.assert_array_equal(np.bincount(labels),
                                  [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    assert pixels[:, [0, 8, 16, 24, 32, 40, 48, 56]].mean() < 0.5 < pixels.mean()  # dark border
    with pytest.raises(ValueError, match="read-only"):
        pixels[0, 0] = 1.0


def test_conditional_digits_label_pairs_each_image_with_its_label():
    x, c = datasets.load_conditional("digits_label", seed=3)
    assert x.shape == (1797, 64) and c.shape == (1797, 1) and x.dtype == c.dtype == np.float32
    np.testing.assert_array_equal(np.sort(np.unique(c)), np.arange(10))
    # undone, the scaling leaves pixel + U(0, 1): each of 200 images lies within half a
    # grey level of the centres of a shipped digit of its own label
    v = (x[:200].astype(np.float64) * datasets.DIGITS_STD + datasets.DIGITS_MEAN) * 17.0
    pixels, labels = datasets.digit_pixels()
    distance = np.abs(v[:, None, :] - (pixels[None] + 0.5)).max(-1)     # [200, 1797]
    nearest = distance.argmin(1)
    assert distance[np.arange(200), nearest].max() <= 0.5 + 1e-4
    np.testing.assert_array_equal(labels[nearest], c[:200, 0])
    np.testing.assert_array_equal(x[:50], datasets.load("digits", n=50, seed=3))
    assert datasets.load_conditional("digits_label", n=20, seed=3)[0].shape == (20, 64)
    with pytest.raises(ValueError, match="digits has 1797 images; received n=2000"):
        datasets.load_conditional("digits_label", n=2000)
    with pytest.raises(ValueError, match="'digits_label' has no known true density"):
        datasets.true_conditional_log_prob("digits_label", x, c)


def test_ks_pvalue_tells_a_sample_of_a_cdf_from_a_shifted_one():
    z = np.random.default_rng(0).standard_normal(20_000)
    normal_cdf = lambda v: tfp.distributions.Normal(np.float64(0), 1.0).cdf(v).numpy()  # noqa: E731
    assert ks_pvalue(z, normal_cdf) > 0.05
    assert ks_pvalue(z + 0.05, normal_cdf) < 1e-6


def test_heavy_tails_is_student_t_and_its_density_is_theirs():
    x = datasets.load("heavy_tails", n=20_000, seed=1).astype(np.float64)
    assert ks_pvalue(x[:, 0], t_cdf(2)) > 1e-3
    assert ks_pvalue((x[:, 1] - 0.5 * x[:, 0]) / 0.5, t_cdf(4)) > 1e-3
    assert 0.005 < np.mean(np.abs(x[:, 0]) > 10) < 0.015      # about 1% beyond 10
    lp = datasets.true_log_prob("heavy_tails", x)
    np.testing.assert_allclose(lp, student_t(2).log_prob(x[:, 0])
                               + student_t(4, loc=0.5 * x[:, 0], scale=0.5).log_prob(x[:, 1]),
                               rtol=1e-9, atol=1e-9)
    entropy = float(student_t(2).entropy() + student_t(4, scale=0.5).entropy())
    assert -lp.mean() == pytest.approx(entropy, abs=0.05)
    # far out: t * t overflowed from 1.3e154 on, and the density was -inf there. Along
    # the ray x = r (1, 1) it falls as r^-(2+1) r^-(4+1) = r^-8 beyond 1e100, the same
    # power on either side of 1e154
    r = np.array([1e120, 1e150, 1e200, 1e300])
    far = datasets.true_log_prob("heavy_tails", np.column_stack([r, r]))
    assert np.isfinite(far).all(), far
    np.testing.assert_allclose(np.diff(far) / np.diff(np.log(r)), -8.0, rtol=1e-9)


@pytest.mark.parametrize("name, width", [("rings", 2), ("moons", 2), ("checkerboard", 2),
                                         ("eight_gaussians", 2), ("two_spirals", 2),
                                         ("moons4d", 4), ("heavy_tails", 2)])
def test_true_log_prob_refuses_points_of_another_width(name, width):
    from kerasflows import datasets
    for x in (np.zeros((3, width + 1)), np.zeros((3, width - 1)), np.zeros(width)):
        with pytest.raises(ValueError, match=rf"x must have shape \[N, {width}\]; received "
                                             rf"shape {re.escape(str(x.shape))}"):
            datasets.true_log_prob(name, x)
    assert datasets.true_log_prob(name, np.zeros((3, width))).shape == (3,)
    # a point at infinity has density 0 (moons, rings, ... gave NaN with NumPy's
    # warnings, moons4d NaN), a point with NaN NaN (checkerboard gave -inf)
    x = np.zeros((4, width))
    x[0, 0], x[2, 0], x[3, 1] = np.inf, np.nan, -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lp = datasets.true_log_prob(name, x)
    assert lp[0] == lp[3] == -np.inf and np.isfinite(lp[1]) and np.isnan(lp[2])


def test_bad_seeds_and_chunks_are_refused_naming_them():
    # NumPy's own messages did not name the argument ("expected non-negative integer",
    # "SeedSequence expects int ...", "range() arg 3 must not be zero", "need at least
    # one array to concatenate")
    for seed in (-1, 2.5, True, [1, -2], "3"):
        message = rf"`seed` must be an integer >= 0, a sequence of them, or None\. " \
                  rf"Received: seed={re.escape(repr(seed))}"
        with pytest.raises(ValueError, match=message):
            datasets.load("moons", n=5, seed=seed)
        with pytest.raises(ValueError, match=message):
            datasets.load_conditional("ring_radius", n=5, seed=seed)
    np.testing.assert_array_equal(datasets.load("moons", n=5, seed=np.int64(3)),
                                  datasets.load("moons", n=5, seed=3))
    assert datasets.load("moons", n=5, seed=[3, 1]).shape == (5, 2)
    x = datasets.load("moons", n=10)
    for chunk in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=rf"`chunk` must be an integer >= 1\. "
                                             rf"Received: chunk={chunk!r}"):
            datasets.true_log_prob("moons", x, chunk=chunk)
    np.testing.assert_allclose(datasets.true_log_prob("moons", x, chunk=np.int64(3)),
                               datasets.true_log_prob("moons", x))
