"""Ready-made recipes: how the coupling recipes split the dimensions."""

import numpy as np
import pytest

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
