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


@pytest.mark.parametrize("recipe", ["RealNVP", "NICE", "NSF"])
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
    # the recipe's own split: a Python TypeError for two values of one keyword
    with pytest.raises(ValueError, match=f"{recipe} sets each coupling layer's `num_masked`"):
        make(4, mask="halves", num_masked=1)


@pytest.mark.parametrize("recipe", ["RealNVP", "NICE", "NSF"])
@pytest.mark.parametrize("mask", M.MASKS)
def test_a_bad_event_dim_raises_naming_it_whatever_the_mask(recipe, mask):
    """The checkerboard split used event_dim first: a bare TypeError of `<=`."""
    for bad in (4.0, None, "4", 0):
        with pytest.raises(ValueError, match=rf"`event_dim` must be an integer >= 1. "
                                             rf"Received: event_dim={bad!r}"):
            getattr(M, recipe)(bad, num_layers=1, hidden_units=(4,), mask=mask)


@pytest.mark.parametrize("recipe", ["RealNVP", "MAF", "NSF"])
def test_hidden_units_given_as_a_string_raise_naming_it(recipe):
    """"64" was read a character at a time: the message named hidden_units='6'."""
    with pytest.raises(ValueError, match=r"such as \(64, 64\). Received: hidden_units='64'"):
        getattr(M, recipe)(2, hidden_units="64")


@pytest.mark.parametrize("recipe, layer", [("RealNVP", "AffineCoupling"),
                                           ("NICE", "AdditiveCoupling"),
                                           ("MAF", "MaskedAutoregressive"),
                                           ("IAF", "InverseAutoregressive"),
                                           ("NSF", "SplineCoupling"), ("Glow", "AffineCoupling")])
def test_a_keyword_typo_is_named_as_the_recipes_with_what_it_takes(recipe, layer):
    """Keras named the layer ("Unrecognized keyword arguments passed to
    AffineCoupling"), which the caller never named."""
    with pytest.raises(TypeError, match=rf"{recipe}\(\) got unexpected keyword argument\(s\) "
                                        rf"\['hiden'\].*Flow's \['base'.*every {layer}, "
                                        r"\['activation'"):
        getattr(M, recipe)(2, num_layers=1, hiden=(8,))
    # what the layers do take still passes through, the spline's own keywords too
    flow = getattr(M, recipe)(2, num_layers=1, hidden_units=(8,), activation="tanh",
                              trainable=False)
    coupled = [l for l in flow.flow_layers if type(l).__name__ == layer]
    assert coupled and not any(l.trainable for l in coupled)
    with pytest.raises(TypeError, match=r"every SplineAutoregressive"):
        M.NSF(2, autoregressive=True, min_bin_widht=1e-3)


@pytest.mark.parametrize("make", [
    lambda reg: M.RealNVP(2, num_layers=1, hidden_units=(8,), activity_regularizer=reg),
    lambda reg: M.MAF(2, num_layers=1, hidden_units=(8,), activity_regularizer=reg),
    lambda reg: kerasflows.layers.ActNorm(activity_regularizer=reg)], ids=["realnvp", "maf",
                                                                          "actnorm"])
def test_a_flow_layer_refuses_an_activity_regularizer_it_would_never_apply(make):
    """Keras applies it in a layer's __call__, which a Flow never makes: a recipe took
    activity_regularizer=L2(100) for every layer and trained exactly as without."""
    with pytest.raises(ValueError, match=r"takes no activity_regularizer \(a Flow calls its "
                                         r"layers' transforms.*received activity_regularizer="):
        make(keras.regularizers.L2(100.0))
    make(None)
    assert M.NSF(2, num_layers=1, autoregressive=True, min_slope=1e-2).flow_layers[0] \
        .knots.min_slope == pytest.approx(1e-2)


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


def test_standardize_is_set_by_fit_to_the_datas_mean_and_std():
    # what it does for the NLL of data far from a unit scale: tests/test_cli_standardize.py
    x = kerasflows.datasets.load("moons", n=1024, seed=0) * 30.0 + 100.0
    flow = M.NSF(2, num_layers=1, hidden_units=(8,), standardize=True)
    flow.compile(optimizer=keras.optimizers.Adam(1e-3))
    flow.fit(x, batch_size=1024, epochs=1, verbose=0)    # one step after the initialisation
    layer = flow.flow_layers[-1]
    np.testing.assert_allclose(layer.data_shift().numpy(), x.mean(0), rtol=1e-3)
    np.testing.assert_allclose(np.exp(layer.log_scale.numpy()), x.std(0), rtol=1e-2)


@pytest.mark.parametrize("dim", [3, 4, 5])
def test_nsf_couplings_split_in_halves_or_alternate_the_parity_classes(dim):
    # by default, the leading D // 2 then (after a reversal) the trailing D // 2
    leading, trailing = list(range(dim // 2)), list(range(dim - dim // 2, dim))
    halves = M.NSF(dim, num_layers=3, hidden_units=(8,))
    assert _pass_through_sets(halves) == [leading, trailing, leading]
    flow = M.NSF(dim, num_layers=4, hidden_units=(8,), mask="checkerboard", dtype="float64")
    evens, odds = list(range(0, dim, 2)), list(range(1, dim, 2))
    assert _pass_through_sets(flow) == [evens, odds, evens, odds]
    kerasflows.testing.perturb_weights(flow, 0.3, seed=1)
    z = np.random.default_rng(0).normal(size=(64, dim))
    x = flow.forward(z)
    np.testing.assert_allclose(flow.inverse(x).numpy(), z, atol=1e-9)
    assert np.isfinite(flow.log_prob(x).numpy()).all()
    with pytest.raises(ValueError, match="`mask` applies to the coupling layers.*"
                                         "mask='checkerboard', autoregressive=True"):
        M.NSF(dim, autoregressive=True, mask="checkerboard")


@pytest.mark.parametrize("make, recipe", [
    (lambda **kw: M.RealNVP(1, **kw), "RealNVP"), (lambda **kw: M.NICE(1, **kw), "NICE"),
    (lambda **kw: M.NSF(1, **kw), "NSF"), (lambda **kw: M.Glow(1, **kw), "Glow"),
    (lambda **kw: M.RealNVP(1, mask="halves", **kw), "RealNVP")])
def test_a_coupling_recipe_of_one_dimension_names_itself_and_what_takes_one(make, recipe):
    with pytest.raises(ValueError, match=rf"^{recipe} needs event_dim >= 2: its coupling layers "
                       r"split the dimensions .*Received: event_dim=1\. For one dimension, use "
                       r"MAF, IAF or NSF\(autoregressive=True\)\.$"):
        make(standardize=True)


@pytest.mark.parametrize("recipe", ["MAF", "IAF"])
def test_autoregressive_recipes_take_one_dimension(recipe):
    for flow in (getattr(M, recipe)(1, 2, (4,)), M.NSF(1, 2, (4,), autoregressive=True)):
        assert flow.log_prob(np.zeros((3, 1), "float32")).shape == (3,)


def test_recipes_build_names_the_recipe_names_that_take_one_dimension():
    from kerasflows import recipes
    with pytest.raises(ValueError, match=r"^Recipe 'nsf' needs event_dim >= 2.*Received: "
                       r"event_dim=1\. For one dimension, use recipe 'maf', 'iaf' or 'nsf_ar'\.$"):
        recipes.build("nsf", 1)
    # a bool or float event_dim was called event_dim=1 (and 'maf' advised), a list as
    # the recipe raised "unhashable type"
    for recipe, event_dim in (("nsf", True), ("realnvp", 1.0), ("maf", 1.0)):
        with pytest.raises(ValueError, match=rf"^`event_dim` must be an integer >= 1\. "
                                             rf"Received: event_dim={event_dim!r}$"):
            recipes.build(recipe, event_dim)
    with pytest.raises(ValueError, match=r"^Unknown recipe \['maf'\]; known recipes: realnvp, "):
        recipes.build(["maf"], 2)


@pytest.mark.parametrize("recipe", ["maf", "nsf"])
def test_recipes_build_takes_the_hidden_units_the_constructors_take(recipe):
    """build ran tuple(hidden_units): 8 gave "'int' object is not iterable", "64" named
    hidden_units='6', None a bare TypeError."""
    from kerasflows import recipes
    for units in (8, np.int64(8), [8], (8,)):
        flow = recipes.build(recipe, 2, num_layers=1, hidden_units=units)
        layer = next(lay for lay in flow.flow_layers if hasattr(lay, "hidden_units"))
        assert tuple(layer.hidden_units) == (8,)
    with pytest.raises(ValueError, match=r"such as \(64, 64\). Received: hidden_units='64'"):
        recipes.build(recipe, 2, hidden_units="64")
    with pytest.raises(ValueError, match=r"`hidden_units` must be a sequence of positive "
                                         r"integers\. Received: hidden_units=None"):
        recipes.build(recipe, 2, hidden_units=None)


def test_recipes_defaults_are_what_build_uses_for_settings_left_none():
    """`defaults(recipe)` is what a None setting means: the flow built with those values
    spelled out has the same config as the one built with them left None, and a
    setting the recipe refuses is not among them."""
    from kerasflows import recipes
    mask = {"realnvp": "halves", "nice": "halves", "nsf": "checkerboard"}
    for recipe in recipes.RECIPES:
        found = recipes.defaults(recipe)
        spelled = {"direction": found.pop("direction", None), "bins": found.pop("bins", None),
                   "bound": found.pop("bound", None), **found}
        config = lambda **kw: recipes.build(recipe, 4, num_layers=2, hidden_units=(8,), name="f",
                                            **kw).get_config()
        assert config(**spelled) == config(), recipe
        if recipe in mask:              # the other mask builds another flow
            assert config(mask=mask[recipe]) != config(), recipe
        for name, value in spelled.items():
            if value is None:           # refused by this recipe: not a default
                with pytest.raises(ValueError):
                    recipes.build(recipe, 4, **{name: {"mask": "halves", "direction": "inverse",
                                                       "bins": 8, "bound": 5.0}[name]})
    assert set(recipes.defaults("nsf")) == {"bins", "bound", "mask", "direction"}
    with pytest.raises(ValueError, match="Unknown recipe 'nope'"):
        recipes.defaults("nope")


def test_bool_settings_take_python_and_numpy_bools_only():
    """NSF(autoregressive="no") built autoregressive layers and None coupling ones
    (`if autoregressive:`); standardize=np.True_ was refused with "must be True or
    False. Received: standardize=np.True_"."""
    for yes, no in ((True, False), (np.True_, np.bool_(False))):
        layers = M.NSF(2, num_layers=1, hidden_units=(4,), autoregressive=yes).flow_layers
        assert isinstance(layers[0], L.SplineAutoregressive)
        layers = M.NSF(2, num_layers=1, hidden_units=(4,), autoregressive=no).flow_layers
        assert isinstance(layers[0], L.SplineCoupling)
        names = [lay.name for lay in M.MAF(2, 1, (4,), standardize=yes).flow_layers]
        assert names[-1] == "standardize"
        names = [lay.name for lay in M.MAF(2, 1, (4,), standardize=no).flow_layers]
        assert "standardize" not in names
    for bad in ("no", "false", None, 1, 0):
        with pytest.raises(ValueError, match=rf"`autoregressive` must be True or False\. "
                                             rf"Received: autoregressive={bad!r}"):
            M.NSF(2, num_layers=1, hidden_units=(4,), autoregressive=bad)
