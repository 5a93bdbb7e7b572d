"""Toy densities and a small image set for trying and testing flows.

`load(name, n, seed)` returns a float32 array `[n, D]`. The 2-D sets follow
the definitions of the project's benchmark (all within about [-4.5, 4.5]^2):

- `moons`: two interleaved half circles (radius 2) + N(0, 0.15^2 I) noise.
- `eight_gaussians`: 8 equal N(c_k, 0.3^2 I), c_k on a circle of radius 3.
- `checkerboard`: uniform on the 8 black 2x2 cells of a 4x4 board on [-4, 4]^2.
- `rings`: circles of radius 1-4, uniform by arc length, + N(0, 0.1^2 I).
- `pinwheel`: 5 arms, (u, v) ~ N((1, 0), diag(0.3^2, 0.1^2)) rotated by
  2*pi*k/5 + 0.25*exp(u), times 2.
- `two_spirals`: s*t*(-cos t, sin t) and its negative, t = 3*pi*sqrt(U),
  s = 4/(3*pi), + N(0, 0.15^2 I).

`moons4d` is a small table of four columns: `moons` (x1, x2) and two
columns that depend on them, `x3 = x1 x2 / 2 + N(0, 0.2^2)` and `x4 =
exp(0.6 x2) + N(0, 0.15^2)` (a product and a skewed, growing column), whose
exact log-density is moons' plus the two Gaussians' (so its entropy is
moons' plus `log(2 pi e 0.2 0.15)` = -0.669 nats, about 1.43 nats).

`heavy_tails` is a 2-D set with heavy tails, unlike the others: `x1` is
Student-t with 2 degrees of freedom (infinite variance) and `x2 = x1 / 2 +
0.5 t`, `t` Student-t with 4 degrees of freedom; its exact log-density is
the two Student-t densities' (entropy 2.949 nats). About 1% of its points lie
beyond |x1| = 10, and 0.25% beyond 20: a flow of Lipschitz layers over a
Gaussian base cannot give them their density (`Flow(base="student_t")` can).

`digits` is the 1,797 8x8 images (64-D, grey levels 0..16) of the test set of
UCI's Optical Recognition of Handwritten Digits (E. Alpaydin and C. Kaynak,
1998, https://doi.org/10.24432/C50P49, CC BY 4.0; the copy scikit-learn
bundles, same order), shipped as `kerasflows/data/digits.npz`, dequantised
with uniform noise and standardised with one scalar: `z = ((x + u)/17 - m)/s`
(`digit_pixels()` gives the grey levels and labels as they are in the file).
`true_log_prob(name, x)` gives the exact (or quadrature) log-density of the
2-D sets except pinwheel, and of moons4d and heavy_tails.

Conditional sets, `load_conditional(name, n, seed)` -> `(x [n, D], context [n, C])`:

- `ring_radius`: a ring whose radius is the context, `r ~ U(1, 4)`,
  `x = r (cos a, sin a) + N(0, 0.1^2 I)` with `a` uniform: p(x | r) is a
  ring of radius r; its exact `true_conditional_log_prob(name, x, context)`
  is known.
- `digits_label`: the digits of `digits` (the same dequantisation and
  scaling) with their labels 0-9 as the context `[n, 1]` (a class-
  conditional set; all 1,797 images by default).
"""

import functools
import math
import os

import numpy as np

from kerasflows.layers.checks import check_positive_int

__all__ = ["load", "true_log_prob", "load_conditional", "true_conditional_log_prob", "NAMES",
           "OFF_SCALE_NAMES",
           "TOY_NAMES", "CONDITIONAL_NAMES", "DIGITS_MEAN", "DIGITS_STD"]

TOY_NAMES = ("moons", "eight_gaussians", "checkerboard", "rings", "pinwheel", "two_spirals")
NAMES = TOY_NAMES + ("moons4d", "heavy_tails", "digits")
#: The sets not on a unit scale, which `kerasflows train` standardizes as it does a data file.
OFF_SCALE_NAMES = ("heavy_tails",)
CONDITIONAL_NAMES = ("ring_radius", "digits_label")
#: The interval of ring_radius' radius (its context).
RING_RADIUS_RANGE = (1.0, 4.0)
DIGITS_MEAN, DIGITS_STD = 0.31625699600526336, 0.3543256796552162
_LOG2PI = math.log(2 * math.pi)
_SPIRAL_T, _SPIRAL_S = 3 * math.pi, 4.0 / (3.0 * math.pi)
#: heavy_tails: the degrees of freedom of x1 and of x2's noise, and that noise's scale.
_HEAVY_DF, _HEAVY_SCALE = (2.0, 4.0), 0.5
#: The noise standard deviations of moons4d's x3 and x4.
_MOONS4D_NOISE = (0.2, 0.15)


def _moon_curve(which, t):
    if which == 0:
        p = np.stack([np.cos(t), np.sin(t)], -1)
    else:
        p = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], -1)
    return 2.0 * (p - np.array([0.5, 0.25]))


def _spiral_curve(sign, t):
    return sign * _SPIRAL_S * t[..., None] * np.stack([-np.cos(t), np.sin(t)], -1)


def _eight_centres():
    a = np.arange(8) * math.pi / 4
    return 3.0 * np.stack([np.cos(a), np.sin(a)], 1)


def _moons(rng, n):
    which = rng.integers(0, 2, n)
    t = rng.random(n) * math.pi
    c = np.where(which[:, None] == 0, _moon_curve(0, t), _moon_curve(1, t))
    return c + 0.15 * rng.standard_normal((n, 2))


def _eight_gaussians(rng, n):
    return _eight_centres()[rng.integers(0, 8, n)] + 0.3 * rng.standard_normal((n, 2))


def _checkerboard(rng, n):
    cells = np.array([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0])
    return -4.0 + 2.0 * (cells[rng.integers(0, len(cells), n)] + rng.random((n, 2)))


def _rings(rng, n):
    radii = np.arange(1.0, 5.0)
    r = rng.choice(radii, size=n, p=radii / radii.sum())[:, None]
    a = rng.random(n) * 2 * math.pi
    return r * np.stack([np.cos(a), np.sin(a)], 1) + 0.1 * rng.standard_normal((n, 2))


def _pinwheel(rng, n):
    k = rng.integers(0, 5, n)
    u = 1.0 + 0.3 * rng.standard_normal(n)
    v = 0.1 * rng.standard_normal(n)
    a = 2 * math.pi * k / 5 + 0.25 * np.exp(u)
    c, s = np.cos(a), np.sin(a)
    return 2.0 * np.stack([c * u - s * v, s * u + c * v], 1)


def _two_spirals(rng, n):
    sign = np.where(rng.integers(0, 2, n) == 0, 1.0, -1.0)
    t = _SPIRAL_T * np.sqrt(rng.random(n))
    return _spiral_curve(sign[:, None], t) + 0.15 * rng.standard_normal((n, 2))


def _moons4d(rng, n):
    x = _moons(rng, n)
    noise = rng.standard_normal((n, 2)) * [_MOONS4D_NOISE]
    return np.c_[x, _moons4d_means(x) + noise]


def _moons4d_means(x):
    """The means of moons4d's x3 and x4 given x1, x2 (`[N, 2]`)."""
    return np.stack([0.5 * x[:, 0] * x[:, 1], np.exp(0.6 * x[:, 1])], 1)


def _heavy_tails(rng, n):
    x1 = rng.standard_t(_HEAVY_DF[0], n)
    return np.c_[x1, 0.5 * x1 + _HEAVY_SCALE * rng.standard_t(_HEAVY_DF[1], n)]


@functools.lru_cache(maxsize=1)
def digit_pixels():
    """The 1,797 digits' grey levels (float64 `[1797, 64]`, 0..16) and labels (int64 `[1797]`),
    read-only, in the file's order."""
    with np.load(os.path.join(os.path.dirname(__file__), "data", "digits.npz")) as data:
        pixels, labels = data["pixels"].astype(np.float64), data["labels"].astype(np.int64)
    pixels.flags.writeable = labels.flags.writeable = False
    return pixels, labels


def _digit_images(rng, n):
    """`n` of the 1,797 digits (dequantised, standardised) in a random order, and their labels."""
    pixels, labels = digit_pixels()
    if n > len(pixels):
        raise ValueError(f"digits has {len(pixels)} images; received n={n}.")
    order = rng.permutation(len(pixels))[:n]
    chosen = pixels[order]
    x = ((chosen + rng.random(chosen.shape)) / 17.0 - DIGITS_MEAN) / DIGITS_STD
    return x, labels[order].reshape(-1, 1)


def _digits(rng, n):
    return _digit_images(rng, n)[0]


_SAMPLERS = {"moons": _moons, "eight_gaussians": _eight_gaussians,
             "checkerboard": _checkerboard, "rings": _rings, "pinwheel": _pinwheel,
             "two_spirals": _two_spirals, "moons4d": _moons4d, "heavy_tails": _heavy_tails,
             "digits": _digits}


def _check_name(name):
    if name not in _SAMPLERS:
        raise ValueError(f"Unknown dataset {name!r}; known datasets: {', '.join(NAMES)}.")


def seeded_generator(seed):
    """`numpy.random.default_rng(seed)` for a seed it takes: an integer >= 0 (a NumPy
    integer too, not a bool), a sequence of them, or None (fresh entropy); else a
    ValueError naming `seed` (NumPy's own said "expected non-negative integer")."""
    try:
        if isinstance(seed, (bool, np.bool_)):
            raise TypeError
        return np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise ValueError("`seed` must be an integer >= 0, a sequence of them, or None. "
                         f"Received: seed={seed!r}") from None


def load(name, n=None, seed=0):
    """Draws `n` points of dataset `name` as float32 `[n, D]`.

    Args:
        name: one of `NAMES`.
        n: number of points; default 10,000 (all 1,797 images for digits).
        seed: seed of the NumPy generator, an integer >= 0 or a sequence of
            them; the same seed gives the same data (None: fresh data).

    Raises:
        ValueError: unknown name (the message lists the known ones), bad n or
            bad seed.
    """
    _check_name(name)
    if n is None:
        n = 1797 if name == "digits" else 10_000
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"`n` must be a positive integer. Received: n={n!r}")
    return _SAMPLERS[name](seeded_generator(seed), int(n)).astype(np.float32)


def _logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    # every term -inf (a point at inf): -inf, not the NaN of -inf - -inf
    m = np.where(np.isneginf(m), 0.0, m)
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def _gauss(x, mu, sigma):
    return -0.5 * ((x - mu) ** 2).sum(-1) / sigma ** 2 - _LOG2PI - 2 * math.log(sigma)


def _curve_log_prob(x, curves, t_hi, log_pt, sigma, nodes=4096, rows=128):
    """log of the mixture over `curves` of int p(t) N(x; c(t), sigma^2 I) dt (midpoint rule).

    The 2-D squared distances are written out per coordinate, `rows` points at a
    time: the `[N, nodes, 2]` differences of every point to every node took 2.5 s
    for 5,000 moons points (0.24 s so, the same numbers to 2e-15)."""
    h = t_hi / nodes
    t = (np.arange(nodes) + 0.5) * h
    logw = log_pt(t) + math.log(h) - math.log(len(curves)) - _LOG2PI - 2 * math.log(sigma)
    centres = np.concatenate([c(t) for c in curves])
    cx, cy, logw = centres[:, 0], centres[:, 1], np.tile(logw, len(curves))
    out = np.empty(len(x))
    for start in range(0, len(x), rows):
        dx = x[start:start + rows, 0, None] - cx
        dy = x[start:start + rows, 1, None] - cy
        out[start:start + rows] = _logsumexp((dx * dx + dy * dy) * (-0.5 / sigma ** 2) + logw, 1)
    return out


def _checkerboard_lp(x):
    inside = np.all(np.abs(x) <= 4.0, 1)
    ij = np.clip(np.floor((x + 4.0) / 2.0), 0, 3)
    black = (ij.sum(1) % 2) == 0
    return np.where(inside & black, -math.log(32.0), -np.inf)


def _log_i0e(x):
    """log of the exponentially scaled modified Bessel function I0(x) exp(-|x|) (float64)."""
    import tensorflow as tf
    return np.log(tf.math.special.bessel_i0e(tf.constant(x, tf.float64)).numpy())


def _rings_lp(x):
    radii = np.arange(1.0, 5.0)[None]
    rho = np.sqrt((x ** 2).sum(1))[:, None]
    s2 = 0.01
    lp = (np.log(radii / radii.sum()) - _LOG2PI - math.log(s2) - (rho - radii) ** 2 / (2 * s2)
          + _log_i0e(rho * radii / s2))
    return _logsumexp(lp, 1)


_TRUE_LOG_PROB = {
    "eight_gaussians": lambda x: _logsumexp(_gauss(x[:, None], _eight_centres()[None], 0.3), 1)
    - math.log(8),
    "checkerboard": _checkerboard_lp,
    "rings": _rings_lp,
    "moons": lambda x: _curve_log_prob(x, [lambda t: _moon_curve(0, t), lambda t: _moon_curve(1, t)],
                                       math.pi, lambda t: np.full_like(t, -math.log(math.pi)), 0.15),
    "two_spirals": lambda x: _curve_log_prob(
        x, [lambda t: _spiral_curve(1.0, t), lambda t: _spiral_curve(-1.0, t)], _SPIRAL_T,
        lambda t: np.log(2 * t / _SPIRAL_T ** 2), 0.15, nodes=8192),
}


def _moons4d_lp(x):
    sigma = np.asarray(_MOONS4D_NOISE)
    z = (x[:, 2:] - _moons4d_means(x[:, :2])) / sigma
    return (_TRUE_LOG_PROB["moons"](x[:, :2])
            - 0.5 * (z ** 2).sum(1) - _LOG2PI - np.log(sigma).sum())


_TRUE_LOG_PROB["moons4d"] = _moons4d_lp


def _student_t_lp(t, df):
    # log1p(t^2 / df) is log(t^2 / df) to float64's precision from |t| = 1e100 on, where
    # t * t overflows from 1.3e154 on (the density was -inf beyond it)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        log_term = np.where(np.abs(t) < 1e100, np.log1p(t * t / df),
                            2 * np.log(np.abs(t)) - math.log(df))
    return (math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
            - (df + 1) / 2 * log_term)


_TRUE_LOG_PROB["heavy_tails"] = lambda x: (
    _student_t_lp(x[:, 0], _HEAVY_DF[0])
    + _student_t_lp((x[:, 1] - 0.5 * x[:, 0]) / _HEAVY_SCALE, _HEAVY_DF[1])
    - math.log(_HEAVY_SCALE))


def true_log_prob(name, x, chunk=2048):
    """The data-generating log-density of a set at `x` `[N, D]` (float64 `[N]`).

    Exact for eight_gaussians, checkerboard, rings and heavy_tails; by midpoint quadrature
    over the curve parameter for moons and two_spirals, and for moons4d
    (moons' density times the two columns' Gaussians given x1, x2). Not
    available for pinwheel or digits (ValueError). The points are taken
    `chunk` (an integer >= 1) at a time, to bound the quadrature's memory.
    """
    _check_name(name)
    if name not in _TRUE_LOG_PROB:
        raise ValueError(f"No closed-form density for {name!r}; available for: "
                         f"{', '.join(_TRUE_LOG_PROB)}.")
    chunk = check_positive_int("chunk", chunk)
    x = np.asarray(x, np.float64)
    width = 4 if name == "moons4d" else 2
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(f"true_log_prob({name!r}, x): x must have shape [N, {width}]; "
                         f"received shape {x.shape}.")
    # a point at infinity (no NaN in it) has density 0: -inf, computed apart (the
    # formulas gave NaN there for moons4d and moons, with NumPy's warnings); a point
    # with NaN, NaN (checkerboard's gave -inf)
    nan = np.isnan(x).any(1)
    far = np.isinf(x).any(1) & ~nan
    rest = np.where(far[:, None], 0.0, x)
    out = np.concatenate([_TRUE_LOG_PROB[name](rest[i:i + chunk])
                          for i in range(0, len(x), chunk)]) if len(x) else np.zeros(0)
    return np.where(far, -np.inf, np.where(nan, np.nan, out))


def _ring_radius(rng, n):
    r = rng.uniform(*RING_RADIUS_RANGE, size=(n, 1))
    a = rng.random(n) * 2 * math.pi
    return r * np.stack([np.cos(a), np.sin(a)], 1) + 0.1 * rng.standard_normal((n, 2)), r


def _ring_radius_lp(x, context):
    r = context[:, 0]
    rho = np.sqrt((x ** 2).sum(1))
    s2 = 0.01
    return (-_LOG2PI - math.log(s2) - (rho - r) ** 2 / (2 * s2)
            + _log_i0e(rho * r / s2))


#: name: (sampler, exact log p(x | context) or None, D, C, default n)
_CONDITIONAL = {"ring_radius": (_ring_radius, _ring_radius_lp, 2, 1, 10_000),
                "digits_label": (_digit_images, None, 64, 1, 1797)}


def _check_conditional_name(name):
    if name not in _CONDITIONAL:
        raise ValueError(f"Unknown conditional dataset {name!r}; known: "
                         f"{', '.join(CONDITIONAL_NAMES)}.")


def load_conditional(name, n=None, seed=0):
    """Draws `n` points of the conditional set `name`: `(x [n, D], context [n, C])`,
    float32; the same seed gives the same data (a seed as `load` takes). Default
    `n`: 10,000 (all 1,797 images for `digits_label`).

    Raises:
        ValueError: unknown name (the message lists the known ones), bad n or
            bad seed.
    """
    _check_conditional_name(name)
    if n is None:
        n = _CONDITIONAL[name][4]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"`n` must be a positive integer. Received: n={n!r}")
    x, context = _CONDITIONAL[name][0](seeded_generator(seed), int(n))
    return x.astype(np.float32), context.astype(np.float32)


def true_conditional_log_prob(name, x, context):
    """The exact log p(x | context) of the conditional set `name` (float64 `[N]`).

    Raises:
        ValueError: an unknown name, a set without a known density
            (`digits_label`), or shapes other than `x [N, D]`, `context [N, C]`.
    """
    _check_conditional_name(name)
    _, log_prob, D, C, _ = _CONDITIONAL[name]
    if log_prob is None:
        raise ValueError(f"{name!r} has no known true density; true_conditional_log_prob "
                         f"knows {', '.join(k for k, v in _CONDITIONAL.items() if v[1])}.")
    x, context = np.asarray(x, np.float64), np.asarray(context, np.float64)
    if x.ndim != 2 or x.shape[1] != D or context.shape != (len(x), C):
        raise ValueError(f"expected x [N, {D}] and context [N, {C}]; received shapes "
                         f"{x.shape} and {context.shape}.")
    return log_prob(x, context)
