"""How a flow's samples match data column by column: `compare_marginals`.

A flow can reach a good NLL and still get one column's distribution wrong
(a skewed income, a bounded count). `compare_marginals(samples, data)` puts
each column's mean and standard deviation beside the data's, with the
two-sample Kolmogorov-Smirnov statistic: the largest gap between the two
empirical distribution functions. `ks_threshold(n, m)` is the gap that two
samples of sizes n and m from one distribution exceed with probability
`alpha` (asymptotic, `c(alpha) * sqrt((n + m) / (n m))` with `c(0.05) =
1.358`; Smirnov 1948), so a column above it is one whose marginal the flow
has visibly not learned.

Example:

```python
samples = flow.sample(len(x), seed=0).numpy()
table = kerasflows.marginals.compare_marginals(samples, x)
table["ks"], kerasflows.marginals.ks_threshold(len(samples), len(x))
```
"""

import math
import numbers

import numpy as np

__all__ = ["compare_marginals", "ks_statistic", "ks_threshold"]


def _columns(name, points):
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or len(points) == 0:
        raise ValueError(f"`{name}` must have shape [N, D] with N >= 1; received shape "
                         f"{points.shape}.")
    return points


def ks_statistic(a, b):
    """The two-sample Kolmogorov-Smirnov statistic of the finite values of `a` and `b`
    (1-D): `max |F_a(t) - F_b(t)|` over t, between 0 and 1."""
    a = np.sort(np.asarray(a, np.float64)[np.isfinite(a)])
    b = np.sort(np.asarray(b, np.float64)[np.isfinite(b)])
    if not len(a) or not len(b):
        raise ValueError("ks_statistic needs finite values on both sides; received "
                         f"{len(a)} and {len(b)}.")
    t = np.concatenate([a, b])
    fa = np.searchsorted(a, t, side="right") / len(a)
    fb = np.searchsorted(b, t, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def ks_threshold(n, m, alpha=0.05):
    """The Kolmogorov-Smirnov gap that samples of sizes `n` and `m` from one
    distribution exceed with probability `alpha` (asymptotic: `sqrt(-log(alpha / 2)
    / 2) * sqrt((n + m) / (n m))`)."""
    whole = lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool)
    if not (0 < alpha < 1) or not (whole(n) and whole(m)) or n < 1 or m < 1:
        raise ValueError(f"expected sizes n, m: integers >= 1, and 0 < alpha < 1; received "
                         f"n={n}, m={m}, alpha={alpha}.")
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))


def compare_marginals(samples, data):
    """Each column of `samples [n, D]` (a flow's) against the same column of `data
    [m, D]`: a dict of `[D]` arrays `data_mean`, `flow_mean`, `data_std`,
    `flow_std` (over the finite values), `flow_finite` (the finite samples'
    count) and `ks` (`ks_statistic`; 1, the largest gap, for a column with no
    finite value on one side, whose mean and deviation are NaN)."""
    samples, data = _columns("samples", samples), _columns("data", data)
    if samples.shape[1] != data.shape[1]:
        raise ValueError(f"samples have {samples.shape[1]} columns and data "
                         f"{data.shape[1]}; expected the same.")
    out = {key: np.zeros(data.shape[1]) for key in
           ("data_mean", "flow_mean", "data_std", "flow_std", "flow_finite", "ks")}
    for d in range(data.shape[1]):
        for side, values in (("data", data[:, d]), ("flow", samples[:, d])):
            finite = values[np.isfinite(values)]
            out[f"{side}_mean"][d] = finite.mean() if len(finite) else np.nan
            out[f"{side}_std"][d] = finite.std() if len(finite) else np.nan
        out["flow_finite"][d] = np.isfinite(samples[:, d]).sum()
        both = out["flow_finite"][d] and np.isfinite(data[:, d]).any()
        out["ks"][d] = ks_statistic(samples[:, d], data[:, d]) if both else 1.0
    return out
