"""`affine_direction` (`AffineCoupling`, `MaskedAutoregressive`, `InverseAutoregressive`)
and `spline_direction` (`SplineCoupling`, `SplineAutoregressive`).

The conformance suite checks both directions as flow transformations
(registry.py); here: each direction is the written formula, the layer's TFP
bijector agrees with the layer, the default, the config round trip, and
files saved before the setting existed loading as the forward form.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import kerasflows
from kerasflows import layers as L
from kerasflows import models
from kerasflows.testing import perturb_weights
from keras_files import with_member

tfb = tfp.bijectors
DIRECTIONS = ("inverse", "forward")
LAYERS = {"affine_coupling": L.AffineCoupling, "maf": L.MaskedAutoregressive,
          "iaf": L.InverseAutoregressive, "spline_coupling": L.SplineCoupling,
          "spline_autoregressive": L.SplineAutoregressive}
SPLINES = ("spline_coupling", "spline_autoregressive")


def setting(name):
    return "spline_direction" if name in SPLINES else "affine_direction"


def make(name, direction, dim=4, ctx=None, **kwargs):
    keras.utils.set_random_seed(0)
    layer = LAYERS[name](hidden_units=(16, 16), context_dim=ctx, dtype="float64",
                         **{setting(name): direction}, **kwargs)
    layer.ensure_built(dim)
    perturb_weights(layer, 0.3, seed=1)
    return layer


def batch(dim=4, ctx=None, n=8, seed=0):
    rng = np.random.default_rng(seed)
    x = tf.constant(1.5 * rng.standard_normal((n, dim)))
    c = None if ctx is None else tf.constant(rng.standard_normal((n, ctx)))
    return x, c


def soft(s, bound):
    return bound * np.tanh(s / bound)


@pytest.mark.parametrize("ctx", [None, 2])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_coupling_is_the_written_formula(direction, ctx):
    layer = make("affine_coupling", direction, ctx=ctx, max_log_scale=2.0)
    x, c = batch(ctx=ctx)
    x0, x1 = x.numpy()[:, :2], x.numpy()[:, 2:]
    inputs = x0 if c is None else np.concatenate([x0, c.numpy()], -1)
    p = layer.net(tf.constant(inputs)).numpy().reshape(8, 2, 2)
    t, s = p[..., 0], soft(p[..., 1], 2.0)
    z, ld = layer.inverse_and_log_det(x, context=c)
    if direction == "inverse":      # z1 = x1 * exp(s) + t
        want, want_ld = x1 * np.exp(s) + t, s.sum(-1)
    else:                           # x1 = z1 * exp(s) + t
        want, want_ld = (x1 - t) * np.exp(-s), -s.sum(-1)
    np.testing.assert_allclose(z[:, 2:], want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(z[:, :2], x0)
    np.testing.assert_allclose(ld, want_ld, atol=1e-12)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_maf_and_iaf_are_the_written_formula(direction):
    maf, iaf = make("maf", direction), make("iaf", direction)
    x, _ = batch()
    p = maf.made(x).numpy()                 # [batch, D, 2] from the data side
    t, s = p[..., 0], soft(p[..., 1], 3.0)
    z, ld = maf.inverse_and_log_det(x)      # the one-pass direction
    if direction == "inverse":
        want, want_ld = x.numpy() * np.exp(s) + t, s.sum(-1)
    else:
        want, want_ld = (x.numpy() - t) * np.exp(-s), -s.sum(-1)
    np.testing.assert_allclose(z, want, atol=1e-12)
    np.testing.assert_allclose(ld, want_ld, atol=1e-12)
    # IAF: the forward is the one-pass direction, conditioned on the base side
    q = iaf.made(x).numpy()
    t, s = q[..., 0], soft(q[..., 1], 3.0)
    y, fld = iaf.forward_and_log_det(x)
    if direction == "inverse":   # Kingma et al.: x = z * exp(s(z)) + t(z)
        want, want_ld = x.numpy() * np.exp(s) + t, s.sum(-1)
    else:
        want, want_ld = (x.numpy() - t) * np.exp(-s), -s.sum(-1)
    np.testing.assert_allclose(y, want, atol=1e-12)
    np.testing.assert_allclose(fld, want_ld, atol=1e-12)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_splines_are_the_spline_in_the_named_direction(direction):
    coupling, ar = make("spline_coupling", direction), make("spline_autoregressive", direction)
    x, _ = batch()
    spline_inverse = direction == "forward"     # whether the density direction inverts it
    z, ld = coupling.inverse_and_log_det(x)
    want, want_ld = coupling.knots.transform(coupling.params_fn(None)(x[:, :2]), x[:, 2:],
                                             inverse=spline_inverse)
    np.testing.assert_allclose(z[:, 2:], want, atol=1e-12)
    np.testing.assert_allclose(ld, want_ld, atol=1e-12)
    z, ld = ar.inverse_and_log_det(x)
    want, want_ld = ar.knots.transform(ar.made(x), x, inverse=spline_inverse)
    np.testing.assert_allclose(z, want, atol=1e-12)
    np.testing.assert_allclose(ld, want_ld, atol=1e-12)


@pytest.mark.parametrize("ctx", [None, 2])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_bijector_agrees_with_the_layer(name, direction, ctx):
    layer = make(name, direction, ctx=ctx)
    z, c = batch(ctx=ctx)
    bij = layer.bijector(c)
    x, fld = layer.forward_and_log_det(z, context=c)
    np.testing.assert_allclose(bij.forward(z), x, atol=1e-10)
    np.testing.assert_allclose(bij.forward_log_det_jacobian(z, event_ndims=1), fld, atol=1e-10)
    z2, ild = layer.inverse_and_log_det(x, context=c)
    np.testing.assert_allclose(bij.inverse(x), z2, atol=1e-10)
    np.testing.assert_allclose(bij.inverse_log_det_jacobian(x, event_ndims=1), ild, atol=1e-10)
    np.testing.assert_allclose(z2, z, atol=1e-8)
    assert np.max(np.abs(x - z)) > 1e-2    # the perturbed layer is not the identity


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_directions_differ_and_the_default_is_inverse(name):
    assert getattr(LAYERS[name](), setting(name)) == "inverse"
    x, _ = batch()
    a, b = make(name, "inverse"), make(name, "forward")   # the same weights
    assert np.max(np.abs(a.inverse_and_log_det(x)[0] - b.inverse_and_log_det(x)[0])) > 1e-2


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_config_round_trip_keeps_the_direction(name, direction):
    layer = make(name, direction)
    config = layer.get_config()
    assert config[setting(name)] == direction
    assert getattr(type(layer).from_config(config), setting(name)) == direction


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_config_without_the_setting_loads_as_forward(name):
    config = LAYERS[name]().get_config()
    del config[setting(name)]               # as kerasflows 0.1.0 saved it
    assert getattr(LAYERS[name].from_config(config), setting(name)) == "forward"


def _drop(config, key):
    """Deletes `key` from every dict nested in `config`; returns how many it deleted."""
    if isinstance(config, list):
        return sum(_drop(item, key) for item in config)
    if not isinstance(config, dict):
        return 0
    return int(config.pop(key, None) is not None) + sum(_drop(v, key) for v in config.values())


RECIPES = {"RealNVP": ({}, "affine_direction"), "MAF": ({}, "affine_direction"),
           "NSF": ({"bins": 4, "bound": 3.0}, "spline_direction"),
           "NSF-AR": ({"bins": 4, "bound": 3.0, "autoregressive": True}, "spline_direction")}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_flow_file_saved_before_the_setting_keeps_its_map(recipe, tmp_path):
    keras.utils.set_random_seed(0)
    kwargs, key = RECIPES[recipe]
    flow = getattr(models, recipe.split("-")[0])(3, num_layers=2, hidden_units=(8,),
                                                 **{key: "forward"}, **kwargs)
    perturb_weights(flow, 0.3, seed=2)
    path = tmp_path / "flow.keras"
    flow.save(path)

    def without_the_setting(data):
        config = json.loads(data)
        assert _drop(config, key) == 2
        return json.dumps(config)
    # the same file without `affine_direction`
    old = with_member(path, tmp_path / "old.keras", "config.json", without_the_setting)
    loaded = keras.models.load_model(old)
    x = flow.sample(16, seed=3)
    np.testing.assert_allclose(loaded.log_prob(x), flow.log_prob(x), rtol=1e-6)
    assert [getattr(l, key) for l in loaded.flow_layers if hasattr(l, key)] == ["forward"] * 2


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("value", ["backward", None, 1])
def test_bad_direction_raises(name, value):
    with pytest.raises(ValueError, match=f"{setting(name)}={value!r}"):
        LAYERS[name](**{setting(name): value})


def test_recipes_pass_the_direction_to_every_layer():
    for recipe in ("RealNVP", "MAF", "IAF"):
        flow = getattr(models, recipe)(4, num_layers=2, affine_direction="forward")
        directions = [l.affine_direction for l in flow.flow_layers if hasattr(l, "affine_direction")]
        assert directions == ["forward", "forward"], recipe
    for autoregressive in (False, True):
        flow = models.NSF(4, num_layers=2, autoregressive=autoregressive,
                          spline_direction="forward")
        directions = [l.spline_direction for l in flow.flow_layers
                      if hasattr(l, "spline_direction")]
        assert directions == ["forward", "forward"]
    assert isinstance(models.RealNVP(4).flow_layers[0], kerasflows.layers.AffineCoupling)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_recipes_build_sets_the_direction_of_its_layers(direction):
    from kerasflows import recipes
    for recipe, key in recipes.DIRECTION_SETTINGS.items():
        flow = recipes.build(recipe, 4, num_layers=2, hidden_units=(8,), direction=direction)
        values = [getattr(l, key) for l in flow.flow_layers if hasattr(l, key)]
        assert values == [direction] * 2, recipe
    with pytest.raises(ValueError, match="direction applies to recipes"):
        recipes.build("nice", 4, direction=direction)


def test_recommended_settings_match_the_shipped_models_direction():
    # the shipped models apply the spline from data to base, the recipe says so
    # explicitly and the manifests record the command with it
    from kerasflows import recipes
    assert {recipes.recommended(n)["direction"] for n in recipes.RECOMMENDED} == {"inverse"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in recipes.RECOMMENDED:
        folder = os.path.join(root, "saved_models", name)
        flow = kerasflows.load(folder)
        assert {l.spline_direction for l in flow.flow_layers
                if hasattr(l, "spline_direction")} == {"inverse"}, name
        with open(os.path.join(folder, "manifest.json")) as f:
            assert "--direction inverse" in json.load(f)["command"], name


def test_the_shipped_models_commands_and_recipes_say_whether_they_standardize():
    """`kerasflows train FILE` standardizes by default (since after the models were built):
    a command that trains from a file names the choice, as the recipe and the rebuild do."""
    import importlib.util
    from kerasflows import datasets, recipes
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        "build_saved_models", os.path.join(root, "scripts", "build_saved_models.py"))
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for name in recipes.RECOMMENDED:
        settings = recipes.recommended(name)
        wanted = settings["standardize"]
        flag = "--standardize" if wanted else "--no-standardize"
        folder = os.path.join(root, "saved_models", name)
        flow = kerasflows.load(folder)
        assert any(l.name == "standardize" for l in flow.flow_layers) == wanted, name
        with open(os.path.join(folder, "manifest.json")) as f:
            command = json.load(f)["command"].split()
        data = command[2]
        by_default = (data in datasets.NAMES + datasets.CONDITIONAL_NAMES
                      and (data in datasets.OFF_SCALE_NAMES) == wanted)
        assert flag in command or by_default, (name, command)
        assert flag in build._train_args(name, settings, "/nonexistent", None), name
