"""kerasflows.marginals: a flow's samples against data, column by column."""

import numpy as np
import pytest

from kerasflows import marginals as M


def test_ks_statistic_is_the_largest_gap_between_the_distribution_functions():
    assert M.ks_statistic([0.0, 1.0], [0.0, 1.0]) == 0.0
    assert M.ks_statistic([0.0, 1.0], [2.0, 3.0]) == 1.0
    # F_a - F_b at t = 1: 3/4 - 1/3
    assert M.ks_statistic([0, 1, 1, 5], [1, 3, 4]) == pytest.approx(0.75 - 1 / 3)
    assert M.ks_statistic([0.0, np.nan, 1.0], [0.0, np.inf, 1.0]) == 0.0     # finite values
    with pytest.raises(ValueError, match="finite values on both sides; received 0 and 2"):
        M.ks_statistic([np.nan], [1.0, 2.0])


def test_ks_threshold_is_exceeded_by_chance_at_its_rate():
    assert M.ks_threshold(1000, 1000) == pytest.approx(1.358 * np.sqrt(2 / 1000), rel=1e-3)
    rng = np.random.default_rng(0)
    gaps = [M.ks_statistic(rng.normal(size=400), rng.normal(size=300)) for _ in range(400)]
    rate = np.mean(np.array(gaps) > M.ks_threshold(400, 300))
    assert 0.02 < rate < 0.09, rate
    shifted = M.ks_statistic(rng.normal(size=400), rng.normal(0.5, 1.0, size=300))
    assert shifted > M.ks_threshold(400, 300)
    with pytest.raises(ValueError, match="alpha=1.5"):
        M.ks_threshold(10, 10, alpha=1.5)
    for n in (float("inf"), 5.5, True):     # NaN, and a size of 5.5, were taken
        with pytest.raises(ValueError, match=rf"integers >= 1.*n={n}"):
            M.ks_threshold(n, 5)
    assert M.ks_threshold(np.int64(10), 10) == M.ks_threshold(10, 10)


def test_compare_marginals_puts_each_column_beside_the_datas():
    rng = np.random.default_rng(1)
    data = np.c_[rng.normal(2.0, 3.0, 5000), rng.exponential(1.0, 5000)]
    samples = np.c_[rng.normal(2.0, 3.0, 4000), rng.normal(1.0, 1.0, 4000)]
    table = M.compare_marginals(samples, data)
    assert set(table) == {"data_mean", "flow_mean", "data_std", "flow_std", "flow_finite", "ks"}
    np.testing.assert_allclose(table["data_mean"], data.mean(0))
    np.testing.assert_allclose(table["flow_std"], samples.std(0))
    threshold = M.ks_threshold(4000, 5000)
    assert table["ks"][0] < threshold < table["ks"][1]      # the second is the wrong shape
    with pytest.raises(ValueError, match="samples have 2 columns and data 3"):
        M.compare_marginals(samples, np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"`data` must have shape \[N, D\] with N >= 1"):
        M.compare_marginals(samples, np.zeros((0, 2)))


def test_a_column_without_finite_samples_has_the_largest_gap_and_is_beyond_chance():
    # one of a flow's columns all inf or NaN: ks_statistic raised, and evaluate
    # --marginals failed after its NLL, printing neither
    import tensorflow as tf
    from kerasflows.cli.evaluate import beyond_chance, column_marginals
    rng = np.random.default_rng(0)
    data = rng.standard_normal((200, 3))
    samples = rng.standard_normal((200, 3))
    samples[:, 1] = np.inf
    samples[::2, 2] = np.nan
    table = M.compare_marginals(samples, data)
    assert table["ks"][1] == 1.0 and np.isnan(table["flow_mean"][1])
    assert table["flow_finite"].tolist() == [200, 0, 100]
    assert table["ks"][2] == M.ks_statistic(samples[1::2, 2], data[:, 2])  # (NaN left out)

    class Sampler:
        def sample(self, n, context=None, seed=None):
            return tf.constant(samples[:n], "float32")
    found = column_marginals(Sampler(), data.astype("float32"))
    assert found["ks_threshold"] == M.ks_threshold(100, 200, 0.05 / 3)
    assert [c["column"] for c in beyond_chance(found)] == ["x2"]


def test_column_marginals_draws_the_samples_in_blocks_with_seeds_from_its_seed():
    # flow.sample(len(x)) in one call: 2e6 rows of moons under an NSF took 3.1 GB beside
    # the NLL's 0.7 GB (which runs in batches)
    import tensorflow as tf
    from kerasflows.cli import evaluate

    class Spy:
        def __init__(self):
            self.calls = []

        def sample(self, n, context=None, seed=None):
            self.calls.append((n, None if context is None else len(context), seed))
            return tf.constant(np.random.default_rng(seed).normal(size=(n, 2)), "float32")
    n = 2 * 65_536 + 7
    x = np.random.default_rng(0).normal(size=(n, 2)).astype("float32")
    spy = Spy()
    found = evaluate.column_marginals(spy, x, context=x[:, :1], seed=5)
    assert [c[:2] for c in spy.calls] == [(65_536, 65_536)] * 2 + [(7, 7)]
    seeds = [c[2] for c in spy.calls]
    assert seeds[0] == 5 and len(set(seeds)) == 3        # the first block: sample(seed=5)'s
    again = Spy()
    assert evaluate.column_marginals(again, x, context=x[:, :1], seed=5) == found
    assert again.calls == spy.calls
    assert found["ks_threshold"] == M.ks_threshold(n, n, 0.025)
    assert max(c["ks"] for c in found["columns"]) < found["ks_threshold"]
