"""2-D target densities for variational fitting: `get(name)` and `NAMES`.

Each target is a callable `log_density(x: Tensor[N, 2]) -> Tensor[N]`
(TF ops, unnormalised allowed), usable as the `log_density` of
`kerasflows.fit_target`, with a `name`, a plotting box `bounds` for the
visualizer, and `log_z`, the log of its normaliser `log integral exp(log_density)`.

- `u1` ... `u4`: the energy functions of Rezende & Mohamed (2015), Table 1,
  `log_density = -U(z)`. `U2`-`U4` do not depend on `|z1|` far out, so they
  are not normalisable as printed; we add the soft box `(z1 / 4)^8 / 2` to
  their energy (small on `[-4, 4]`, the region the paper draws), making them
  proper. Their `log_z` comes from quadrature on a fine grid.
- `banana`: a Rosenbrock-style twisted Gaussian (Haario et al. 1999):
  `x1 ~ N(0, 1.25^2)`, `x2 | x1 ~ N(0.5 x1^2 - 1.5, 0.5^2)`; normalised,
  `log_z = 0` exactly.
- `gaussian_mixture`: `sum_k exp(-|x - mu_k|^2 / (2 s_k^2))`, three
  unnormalised overlapping isotropic bumps; `log_z = log sum_k 2 pi s_k^2`
  exactly.
"""

import math

import numpy as np
import tensorflow as tf

__all__ = ["Target", "get", "NAMES"]


class Target:
    """A named 2-D log-density with its plotting box and log-normaliser.

    Args:
        name: the registry name.
        fn: `fn(x1, x2) -> log density`, elementwise TF ops.
        bounds: `((x1_min, x1_max), (x2_min, x2_max))`, where the mass is.
        log_z: the exact log-normaliser, or None to compute it by quadrature.

    Call arguments:
        x: a `[N, 2]` tensor or array.

    Returns:
        `log_density(x)`, shape `[N]`, in the dtype of `x` (float32 default).
    """

    def __init__(self, name, fn, bounds, log_z=None):
        self.name, self._fn, self.bounds, self._log_z = name, fn, bounds, log_z

    def __call__(self, x):
        x = tf.convert_to_tensor(x)
        if not x.dtype.is_floating:
            x = tf.cast(x, "float32")
        if x.shape.rank is not None and (x.shape.rank != 2 or x.shape[-1] not in (None, 2)):
            raise ValueError(f"Target '{self.name}' expects x of shape (N, 2); "
                             f"received shape {tuple(x.shape.as_list())}.")
        return self._fn(x[:, 0], x[:, 1])

    @property
    def log_z(self):
        """`log integral exp(log_density(x)) dx` (exact, or by grid quadrature, cached)."""
        if self._log_z is None:
            self._log_z = grid_log_z(self)
        return self._log_z

    def __repr__(self):
        return f"Target({self.name!r})"


def grid_log_z(log_density, bounds=None, margin=2.0, n=1200):
    """Log-normaliser by the midpoint rule on an `n x n` grid (float64).

    The grid covers `bounds` (default: the target's) widened by `margin` on
    every side; the targets here put negligible mass outside that.
    """
    (a, b), (c, d) = bounds or log_density.bounds
    xs = np.linspace(a - margin, b + margin, n + 1)
    ys = np.linspace(c - margin, d + margin, n + 1)
    xs, ys = (xs[1:] + xs[:-1]) / 2, (ys[1:] + ys[:-1]) / 2
    grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)
    logp = log_density(tf.constant(grid, "float64")).numpy()
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    m = logp.max()
    return float(m + np.log(np.sum(np.exp(logp - m)) * cell))


def _logaddexp(a, b):
    return tf.reduce_logsumexp(tf.stack([a, b], 0), axis=0)


def _w1(z1):
    return tf.sin(2.0 * math.pi * z1 / 4.0)


def _box(z1):
    return 0.5 * (z1 / 4.0) ** 8


def _u1(z1, z2):
    r = tf.sqrt(z1 * z1 + z2 * z2)
    lobes = _logaddexp(-0.5 * ((z1 - 2.0) / 0.6) ** 2, -0.5 * ((z1 + 2.0) / 0.6) ** 2)
    return -(0.5 * ((r - 2.0) / 0.4) ** 2 - lobes)


def _u2(z1, z2):
    return -(0.5 * ((z2 - _w1(z1)) / 0.4) ** 2 + _box(z1))


def _u3(z1, z2):
    w2 = 3.0 * tf.exp(-0.5 * ((z1 - 1.0) / 0.6) ** 2)
    return _logaddexp(-0.5 * ((z2 - _w1(z1)) / 0.35) ** 2,
                      -0.5 * ((z2 - _w1(z1) + w2) / 0.35) ** 2) - _box(z1)


def _u4(z1, z2):
    w3 = 3.0 * tf.sigmoid((z1 - 1.0) / 0.3)
    return _logaddexp(-0.5 * ((z2 - _w1(z1)) / 0.4) ** 2,
                      -0.5 * ((z2 - _w1(z1) + w3) / 0.35) ** 2) - _box(z1)


_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _normal_log_pdf(x, mean, scale):
    return -0.5 * ((x - mean) / scale) ** 2 - math.log(scale) - _HALF_LOG_2PI


def _banana(z1, z2):
    return _normal_log_pdf(z1, 0.0, 1.25) + _normal_log_pdf(z2, 0.5 * z1 * z1 - 1.5, 0.5)


#: Means and scales of the Gaussian-mixture target's unnormalised bumps.
MIXTURE_MEANS = ((-1.0, -0.6), (1.0, -0.6), (0.0, 1.0))
MIXTURE_SCALES = (0.7, 0.6, 0.8)


def _mixture(z1, z2):
    terms = [-((z1 - m1) ** 2 + (z2 - m2) ** 2) / (2.0 * s * s)
             for (m1, m2), s in zip(MIXTURE_MEANS, MIXTURE_SCALES)]
    return tf.reduce_logsumexp(tf.stack(terms, 0), axis=0)


_MIXTURE_LOG_Z = math.log(sum(2.0 * math.pi * s * s for s in MIXTURE_SCALES))

_BOX = ((-4.0, 4.0), (-4.0, 4.0))
_TARGETS = {
    "u1": Target("u1", _u1, _BOX),
    "u2": Target("u2", _u2, _BOX),
    "u3": Target("u3", _u3, _BOX),
    "u4": Target("u4", _u4, _BOX),
    "banana": Target("banana", _banana, ((-4.0, 4.0), (-3.0, 5.0)), log_z=0.0),
    "gaussian_mixture": Target("gaussian_mixture", _mixture, ((-3.0, 3.0), (-3.0, 3.0)),
                               log_z=_MIXTURE_LOG_Z),
}

#: Names accepted by `get`.
NAMES = tuple(_TARGETS)


def get(name):
    """Returns the target called `name` (one of `NAMES`) as a `Target`.

    A `Target` given in place of a name is returned as is.

    Raises:
        ValueError: for an unknown name.
    """
    if isinstance(name, Target):
        return name
    if name not in _TARGETS:
        raise ValueError(f"Unknown target. Expected one of {NAMES}. Received: name={name!r}")
    return _TARGETS[name]
