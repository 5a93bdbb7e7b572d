"""kerasflows.datasets: the toy densities, digits, and their true log-densities."""

import numpy as np
import pytest

from kerasflows import datasets


@pytest.mark.parametrize("name", datasets.NAMES)
def test_load_is_reproducible_float32_and_bounded(name):
    n = 500
    x = datasets.load(name, n=n, seed=3)
    assert x.dtype == np.float32 and x.shape == (n, 64 if name == "digits" else 2)
    np.testing.assert_array_equal(x, datasets.load(name, n=n, seed=3))
    assert not np.array_equal(x, datasets.load(name, n=n, seed=4))
    assert np.all(np.isfinite(x)) and np.abs(x).max() < 6.0


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
