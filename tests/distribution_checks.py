"""Goodness-of-fit helpers for the tests (in place of scipy.stats, which kerasflows
does not depend on): a one-sample Kolmogorov-Smirnov p-value, and Student-t
densities from TensorFlow Probability."""

import math

import numpy as np
import tensorflow_probability as tfp


def ks_pvalue(x, cdf):
    """p-value of the one-sample Kolmogorov-Smirnov test of sample `x` against `cdf`.

    Asymptotic Kolmogorov distribution of sqrt(n) D with Stephens' (1970)
    small-sample correction, lambda = (sqrt(n) + 0.12 + 0.11 / sqrt(n)) D,
    p = 2 sum_k (-1)^(k-1) exp(-2 k^2 lambda^2).
    """
    x = np.sort(np.asarray(x, np.float64))
    n = len(x)
    f = np.asarray(cdf(x), np.float64)
    d = max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    if lam < 0.2:
        return 1.0
    k = np.arange(1, 101)
    return float(np.clip(2 * np.sum((-1.0) ** (k - 1) * np.exp(-2 * k * k * lam * lam)), 0, 1))


def student_t(df, loc=0.0, scale=1.0):
    """A float64 Student-t distribution (TFP); `.cdf`, `.log_prob`, `.entropy`."""
    return tfp.distributions.StudentT(np.float64(df), np.float64(loc), np.float64(scale))


def t_cdf(df):
    """The standard Student-t CDF with `df` degrees of freedom, as a NumPy function."""
    return lambda x: student_t(df).cdf(np.asarray(x, np.float64)).numpy()
