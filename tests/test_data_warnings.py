"""`Flow.fit`'s warnings about array training data: constant and whole-number
columns, and columns far from a unit scale unless the flow standardises them."""

import warnings

import numpy as np
import pytest

import kerasflows
from kerasflows.data_warnings import degenerate_columns, off_scale_columns, standardizes
from kerasflows.layers import ActNorm, AffineCoupling, BatchNorm

MOONS = kerasflows.datasets.load("moons", n=512, seed=0)


def test_off_scale_columns_are_those_far_from_unit_size():
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(0, 1, 500), rng.normal(0, 50, 500), rng.normal(100, 1, 500),
                  rng.normal(0, 0.01, 500), np.full(500, 7.0), rng.normal(3, 5, 500)], 1)
    assert off_scale_columns(x).tolist() == [1, 2, 3]      # not the constant one
    assert off_scale_columns(MOONS).tolist() == [] and off_scale_columns(x[:1]).tolist() == []


def _fit(flow, x):
    # the warnings come from fit's data checks, before any step: no XLA compile needed
    flow.compile(optimizer="adam", jit_compile=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flow.fit(x, epochs=1, batch_size=256, verbose=0)
    return [str(w.message) for w in caught if "unit scale" in str(w.message)]


def test_fit_warns_of_data_far_from_unit_scale_unless_the_flow_standardizes_it():
    far = MOONS * 30.0 + 100.0
    said = _fit(kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,)), far)
    assert len(said) == 1 and said[0].startswith(
        "Flow.fit: column(s) 0, 1 of the training data are far from a unit scale (column 0: "
        "mean 1"), said
    assert "standardize=True" in said[0]
    assert _fit(kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,)), MOONS) == []
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,), standardize=True)
    assert standardizes(flow) and _fit(flow, far) == []
    batch_norm = kerasflows.Flow([AffineCoupling(hidden_units=(8,)), BatchNorm()], 2)
    assert standardizes(batch_norm) and _fit(batch_norm, far) == []
    first = kerasflows.Flow([ActNorm(), AffineCoupling(hidden_units=(8,))], 2)
    assert not standardizes(first)           # an ActNorm at the base end does not
    assert len(_fit(first, far)) == 1
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,))
    flow.compile(optimizer="adam", jit_compile=False)
    with pytest.warns(UserWarning, match=r"column\(s\) 1 of .* \(column 1: mean .*, std 0\.002"):
        flow.fit(MOONS * [1.0, 0.002], epochs=1, verbose=0)     # a tiny spread: too small


def test_fit_warns_of_a_context_far_from_unit_scale_without_a_context_encoder():
    import keras
    x, c = kerasflows.datasets.load_conditional("ring_radius", n=512, seed=0)
    far = c * 1000.0 + 5000.0
    said = _fit(kerasflows.models.NSF(2, num_layers=1, hidden_units=(8,), context_dim=1),
                (x, far))
    assert len(said) == 1 and said[0].startswith(
        "Flow.fit: context column(s) 0 are far from a unit scale (column 0: mean 7"), said
    assert "context_encoder=keras.layers.Normalization()" in said[0]
    norm = keras.layers.Normalization()
    norm.adapt(far)
    encoded = kerasflows.models.NSF(2, num_layers=1, hidden_units=(8,), context_dim=1,
                                    context_encoder=norm)
    assert _fit(encoded, (x, far)) == []
    assert _fit(kerasflows.models.NSF(2, num_layers=1, hidden_units=(8,), context_dim=1),
                (x, c)) == []


def test_large_readings_float32_holds_as_whole_numbers_are_not_whole_number_columns():
    """Real readings near 1e9 (a Unix time) are whole numbers in float32, which keeps
    none but them beyond 2**24: they were called whole numbers, and `fit` warned to
    dequantize a column noise in [0, 1) cannot change."""
    rng = np.random.default_rng(0)
    x = np.stack([1.7e9 + 1e5 * rng.normal(size=200), rng.integers(0, 9, 200)], 1)
    assert np.all(x.astype(np.float32) == np.round(x.astype(np.float32)))
    for data in (x, x.astype(np.float32)):
        constant, whole = degenerate_columns(data)
        assert list(constant) == [] and list(whole) == [1]
    # from 2**23 on float32 holds whole numbers only (noise in [0, 1) is lost there)
    near = np.array([[2.0 ** 23 - 5, 1.5], [2.0 ** 23 - 1, 2.5]])
    assert list(degenerate_columns(near)[1]) == [0]
    assert list(degenerate_columns(near + [[4, 0], [4, 0]])[1]) == []
