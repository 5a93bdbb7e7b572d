"""Ready-made recipes: how the coupling recipes split the dimensions, and
`standardize=True`'s data-end ActNorm."""

import keras
import numpy as np
import pytest

import kerasflows

from kerasflows import layers as L
from kerasflows import models as M


def _pass_through_sets(flow):
    """Data-space indices each coupling layer passes through, data end first."""
    labels = np.arange(flow.event_dim, dtype="float32")[None]
    sets = []
    for layer in reversed(flow.flow_layers):
        if isinstance(layer, L.Permute):
            labels = layer.inverse_and_log_det(labels)[0].numpy()
        elif hasattr(layer, "masked"):
            sets.append(sorted(labels[0, :layer.masked].astype(int).tolist()))
    return sets


@pytest.mark.parametrize("recipe", ["RealNVP", "NICE"])
@pytest.mark.parametrize("dim", [3, 4, 5, 8])
@pytest.mark.parametrize("num_layers", [1, 4, 5])
def test_checkerboard_couplings_alternate_the_parity_classes(recipe, dim, num_layers):
    flow = getattr(M, recipe)(dim, num_layers=num_layers, hidden_units=(8,))
    evens, odds = list(range(0, dim, 2)), list(range(1, dim, 2))
    # the layer data meet first passes the even dimensions, then odd, even, ...
    assert _pass_through_sets(flow) == [evens if k % 2 == 0 else odds
                                        for k in range(num_layers)]


@pytest.mark.parametrize("recipe", ["RealNVP", "NICE"])
def test_halves_and_two_dimensions(recipe):
    make = getattr(M, recipe)
    halves = make(6, num_layers=3, hidden_units=(8,), mask="halves")
    assert _pass_through_sets(halves) == [[0, 1, 2], [3, 4, 5], [0, 1, 2]]
    assert not any(l.name == "checkerboard" for l in halves.flow_layers)
    # in 2-D both masks are the same flow, with no extra layer
    two = [make(2, num_layers=3, hidden_units=(8,), mask=m) for m in M.MASKS]
    assert [[type(l) for l in f.flow_layers] for f in two][0] == \
        [[type(l) for l in f.flow_layers] for f in two][1]
    assert _pass_through_sets(two[0]) == [[0], [1], [0]]
    with pytest.raises(ValueError, match="mask.*'stripes'"):
        make(4, mask="stripes")


@pytest.mark.parametrize("recipe", ["RealNVP", "NICE", "MAF", "IAF", "NSF", "Glow"])
def test_standardize_puts_an_actnorm_at_the_data_end(recipe):
    plain = getattr(M, recipe)(3, num_layers=2, hidden_units=(8,))
    flow = getattr(M, recipe)(3, num_layers=2, hidden_units=(8,), standardize=True)
    names = [l.name for l in flow.flow_layers]
    assert names == [l.name for l in plain.flow_layers] + ["standardize"]
    assert isinstance(flow.flow_layers[-1], L.ActNorm) and flow.needs_data_init
    with pytest.raises(ValueError, match="`standardize` must be True or False. Received: "
                                         "standardize='yes'"):
        getattr(M, recipe)(3, num_layers=1, standardize="yes")


def test_standardize_fits_data_far_from_a_unit_scale():
    # moons moved to x * 30 + 100: without standardising, the splines (on [-5, 5]) and
    # the conditioners see values in the hundreds, and the NLL stays in the thousands
    x = kerasflows.datasets.load("moons", n=4096, seed=0) * 30.0 + 100.0
    results = {}
    for standardize in (False, True):
        keras.utils.set_random_seed(0)
        flow = M.NSF(2, num_layers=3, hidden_units=(32, 32), standardize=standardize)
        flow.compile(optimizer=keras.optimizers.Adam(3e-3))
        flow.fit(x, batch_size=512, epochs=6, verbose=0)
        results[standardize] = -float(np.mean(flow.log_prob(x[:1000])))
        if standardize:     # set from the first batch to the mean and std, then trained
            layer = flow.flow_layers[-1]
            assert (np.abs(layer.shift.numpy() - x.mean(0)) < 0.2 * x.std(0)).all()
            np.testing.assert_allclose(np.exp(layer.log_scale.numpy()), x.std(0), rtol=0.3)
    # in moons' own units (minus 2 log 30), a good fit is about 2.2 nats
    assert results[True] - 2 * np.log(30.0) < 3.0 < results[False] - 2 * np.log(30.0), results
