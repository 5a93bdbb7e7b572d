"""kerasflows.targets: definitions, normalisers, shapes and errors."""

import math

import numpy as np
import pytest
import tensorflow as tf

from kerasflows import targets
from kerasflows.targets import grid_log_z


def test_registry():
    assert set(targets.NAMES) == {"u1", "u2", "u3", "u4", "banana", "gaussian_mixture"}
    for name in targets.NAMES:
        target = targets.get(name)
        assert target.name == name and targets.get(target) is target
        out = target(np.zeros((5, 2), np.float32))
        assert out.shape == (5,) and out.dtype == tf.float32
        assert np.all(np.isfinite(target(tf.random.normal([100, 2]) * 3).numpy()))


def test_u1_matches_rezende_mohamed_table_1():
    z = np.array([[2.0, 0.0], [0.3, -1.7], [-1.0, 2.5]])
    r = np.linalg.norm(z, axis=1)
    u = 0.5 * ((r - 2) / 0.4) ** 2 - np.log(np.exp(-0.5 * ((z[:, 0] - 2) / 0.6) ** 2)
                                            + np.exp(-0.5 * ((z[:, 0] + 2) / 0.6) ** 2))
    np.testing.assert_allclose(targets.get("u1")(tf.constant(z)).numpy(), -u, rtol=1e-12)


def test_u3_and_u4_inside_the_box_follow_table_1():
    z = np.array([[0.5, 0.2], [-1.5, -2.0], [1.2, -1.0]])
    w1 = np.sin(2 * np.pi * z[:, 0] / 4)
    w2 = 3 * np.exp(-0.5 * ((z[:, 0] - 1) / 0.6) ** 2)
    w3 = 3 / (1 + np.exp(-(z[:, 0] - 1) / 0.3))
    box = 0.5 * (z[:, 0] / 4) ** 8
    u3 = -np.log(np.exp(-0.5 * ((z[:, 1] - w1) / 0.35) ** 2)
                 + np.exp(-0.5 * ((z[:, 1] - w1 + w2) / 0.35) ** 2))
    u4 = -np.log(np.exp(-0.5 * ((z[:, 1] - w1) / 0.4) ** 2)
                 + np.exp(-0.5 * ((z[:, 1] - w1 + w3) / 0.35) ** 2))
    np.testing.assert_allclose(targets.get("u3")(tf.constant(z)).numpy(), -u3 - box, rtol=1e-12)
    np.testing.assert_allclose(targets.get("u4")(tf.constant(z)).numpy(), -u4 - box, rtol=1e-12)


@pytest.mark.parametrize("name", ["gaussian_mixture", "banana"])
def test_exact_log_z_agrees_with_quadrature(name):
    target = targets.get(name)
    (a, b), (c, d) = target.bounds
    assert grid_log_z(target, bounds=((a - 3, b + 3), (c - 3, d + 6)), n=800) == pytest.approx(
        target.log_z, abs=1e-4)


def test_mixture_log_z_is_the_sum_of_bump_masses():
    expected = math.log(sum(2 * math.pi * s * s for s in targets.MIXTURE_SCALES))
    assert targets.get("gaussian_mixture").log_z == pytest.approx(expected, rel=1e-12)
    assert expected != pytest.approx(0.0, abs=0.5)  # really unnormalised


@pytest.mark.parametrize("name", ["u2", "u3", "u4"])
def test_box_makes_u2_to_u4_normalisable(name):
    target = targets.get(name)
    log_z = target.log_z
    assert np.isfinite(log_z)
    wider = grid_log_z(target, bounds=((-8, 8), (-8, 8)), n=1000)
    assert wider == pytest.approx(log_z, abs=1e-3)


def test_errors():
    with pytest.raises(ValueError, match="name='u5'"):
        targets.get("u5")
    with pytest.raises(ValueError, match=r"shape \(N, 2\).*\(4, 3\)"):
        targets.get("u1")(np.zeros((4, 3), np.float32))
