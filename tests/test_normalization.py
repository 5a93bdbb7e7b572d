"""What is special to `ActNorm` (data-dependent init) and `BatchNorm` (batch/moving statistics).

The conformance suite checks both at event_dim 2 and 5 with their initial
statistics; here they are checked at 3 with non-trivial ones.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasflows
from kerasflows.layers import ActNorm, AffineCoupling, BatchNorm
from kerasflows.testing import check_flow_layer

DTYPES = ["float32", "float64"]


def _data(n=1024, dim=2, mean=5.0, std=3.0, seed=0):
    rng = np.random.default_rng(seed)
    return (mean + std * rng.standard_normal((n, dim))).astype("float32")


def _normal_log_prob(z):
    return -0.5 * np.sum(z * z, -1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


# -- ActNorm ------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_actnorm_check_after_init(dtype):
    layer = ActNorm(dtype=dtype)
    layer.ensure_built(3)
    layer.data_init(_data(64, 3))  # then perturbed by check_flow_layer, not re-initialised
    check_flow_layer(layer, 3, perturb=0.3)


def test_actnorm_data_init_standardises_once():
    x = _data(512, 3, mean=-2.0, std=0.5)
    layer = ActNorm(dtype="float64")
    layer.data_init(x)
    z, _ = layer.inverse_and_log_det(x)
    np.testing.assert_allclose(np.mean(z, 0), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.std(z, 0), 1.0, atol=1e-5)
    assert bool(layer.initialized.numpy())
    before = [w.numpy().copy() for w in layer.weights]
    layer.data_init(x + 100.0)
    for w, b in zip(layer.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)


def test_actnorm_data_init_works_inside_tf_function():
    layer = ActNorm()
    layer.ensure_built(2)
    tf.function(layer.data_init)(tf.constant(_data(256)))
    np.testing.assert_allclose(layer.data_shift().numpy(), 5.0, atol=0.4)
    assert bool(layer.initialized.numpy())


@pytest.mark.parametrize("jit", [False, True])
def test_actnorm_fit_initialises_from_first_batch(jit):
    x = _data()
    flow = kerasflows.Flow([ActNorm()], event_dim=2)
    flow.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit)
    history = flow.fit(x, batch_size=256, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"]).all()
    layer = flow.flow_layers[0]
    assert bool(layer.initialized.numpy())
    first = x[:256]
    np.testing.assert_allclose(layer.data_shift().numpy(), first.mean(0), atol=0.02)
    np.testing.assert_allclose(layer.log_scale.numpy(), np.log(first.std(0)), atol=0.02)


def test_actnorm_fit_initialises_from_random_rows_when_shuffling():
    # sorted data: the first batch in file order is far from the data's statistics
    x = _data(n=4096)
    x = x[np.argsort(x[:, 0])]
    flow = kerasflows.Flow([ActNorm()], event_dim=2)
    flow.compile(optimizer=keras.optimizers.Adam(0.0))
    keras.utils.set_random_seed(3)
    flow.fit(x, batch_size=256, epochs=1, verbose=0)        # shuffle=True, Keras' default
    layer = flow.flow_layers[0]
    np.testing.assert_allclose(layer.data_shift().numpy(), x.mean(0), atol=0.5)
    np.testing.assert_allclose(layer.log_scale.numpy(), np.log(x.std(0)), atol=0.15)
    assert abs(layer.data_shift().numpy()[0] - x[:256, 0].mean()) > 3.0
    # the same seed draws the same rows
    again = kerasflows.Flow([ActNorm()], event_dim=2)
    again.compile(optimizer=keras.optimizers.Adam(0.0))
    keras.utils.set_random_seed(3)
    again.fit(x, batch_size=256, epochs=1, verbose=0)
    np.testing.assert_array_equal(again.flow_layers[0].data_shift().numpy(), layer.data_shift().numpy())


@pytest.mark.parametrize("conditional", [False, True])
def test_actnorm_fit_initialises_from_rows_validation_split_leaves_to_train_on(conditional):
    """The rows were drawn from all of x: with a held-out tail 100 away (Keras holds
    out the last rows, before shuffling), the shift came out near 10."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(900, 2)), rng.normal(size=(100, 2)) + 100])
    x = x.astype("float32")
    c = np.zeros((1000, 1), "float32")
    layers = [ActNorm()]
    if conditional:
        layers.append(kerasflows.layers.AffineCoupling(hidden_units=(4,), context_dim=1))
    flow = kerasflows.Flow(layers, event_dim=2, context_dim=1 if conditional else None)
    flow.compile(optimizer=keras.optimizers.Adam(0.0))
    keras.utils.set_random_seed(1)
    flow.fit((x, c) if conditional else x, batch_size=256, epochs=1, verbose=0,
             validation_split=0.1)
    layer = flow.flow_layers[0]
    assert np.abs(layer.data_shift().numpy()).max() < 0.3, layer.data_shift().numpy()
    assert np.abs(layer.log_scale.numpy()).max() < 0.2, layer.log_scale.numpy()


def test_train_step_refuses_an_actnorm_not_yet_initialised():
    from kerasflows.training import make_train_step
    x = _data()
    flow = kerasflows.models.Glow(2, num_layers=2, hidden_units=(8,))
    with pytest.raises(ValueError, match=r"initialise from data.*flow.initialize\(x\)"):
        make_train_step(flow, keras.optimizers.Adam(1e-3))
    flow.initialize(x[:256])
    step = make_train_step(flow, keras.optimizers.Adam(1e-3))
    assert np.isfinite(float(step(x[:256])))


def test_loaded_actnorm_is_not_reinitialised(tmp_path):
    flow = kerasflows.Flow([ActNorm()], event_dim=2)
    flow.compile(optimizer=keras.optimizers.Adam(1e-3))
    flow.fit(_data(), batch_size=256, epochs=1, verbose=0)
    path = str(tmp_path / "f.keras")
    flow.save(path)
    loaded = keras.models.load_model(path)
    layer = loaded.flow_layers[0]
    assert bool(layer.initialized.numpy())
    shift = layer.data_shift().numpy().copy()
    loaded.compile(optimizer=keras.optimizers.Adam(1e-3))
    loaded.fit(_data(mean=-10.0, std=0.1, seed=1), batch_size=256, epochs=1, verbose=0)
    # four Adam steps of 1e-3 standard deviations (3) each; a new init would move it to -10
    np.testing.assert_allclose(layer.data_shift().numpy(), shift, atol=0.05)


# -- BatchNorm ----------------------------------------------------------------

def _set_statistics(layer, dim, seed=0):
    rng = np.random.default_rng(seed)
    layer.moving_mean.assign(rng.standard_normal(dim))
    layer.moving_variance.assign(rng.uniform(0.5, 2.0, dim))


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_check_with_moving_statistics(dtype):
    layer = BatchNorm(dtype=dtype)
    layer.ensure_built(3)
    _set_statistics(layer, 3)
    report = check_flow_layer(layer, 3, perturb=0.3)
    if dtype == "float64":
        assert report["inverse_error"] <= 1e-5 and report["logdet_error"] <= 1e-6


def test_batchnorm_training_uses_batch_statistics_and_updates_moving():
    layer = BatchNorm(momentum=0.9, epsilon=1e-5, dtype="float64")
    layer.ensure_built(3)
    layer.log_gamma.assign([0.1, -0.2, 0.3])
    layer.beta.assign([1.0, 0.0, -1.0])
    x = _data(400, 3).astype("float64")
    mean, var = x.mean(0), x.var(0)
    z, ld = layer.inverse_and_log_det(x, training=True)
    expected = (x - mean) / np.sqrt(var + 1e-5) * np.exp([0.1, -0.2, 0.3]) + [1.0, 0.0, -1.0]
    np.testing.assert_allclose(z, expected, atol=1e-10)
    np.testing.assert_allclose(ld, np.sum([0.1, -0.2, 0.3] - 0.5 * np.log(var + 1e-5)),
                               atol=1e-10)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * mean, atol=1e-10)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.9 + 0.1 * var, atol=1e-10)


def test_batchnorm_inference_leaves_statistics_alone():
    layer = BatchNorm()
    layer.inverse_and_log_det(_data(64), training=False)
    layer.forward_and_log_det(_data(64))
    np.testing.assert_array_equal(layer.moving_mean.numpy(), 0.0)
    np.testing.assert_array_equal(layer.moving_variance.numpy(), 1.0)


@pytest.mark.parametrize("jit", [False, True])
def test_batchnorm_fit_moves_statistics_to_data(jit, tmp_path):
    x = _data()
    flow = kerasflows.Flow([BatchNorm()], event_dim=2)
    flow.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=jit)
    history = flow.fit(x, batch_size=64, epochs=4, verbose=0)  # 64 steps
    assert np.isfinite(history.history["loss"]).all()
    layer = flow.flow_layers[0]
    np.testing.assert_allclose(layer.moving_mean.numpy(), x.mean(0), atol=0.3)
    np.testing.assert_allclose(layer.moving_variance.numpy(), x.var(0), rtol=0.2)
    # Inference log-prob uses the moving statistics, whatever the batch.
    mm, mv = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    lg, b = layer.log_gamma.numpy(), layer.beta.numpy()
    z = (x[:5] - mm) / np.sqrt(mv + 1e-5) * np.exp(lg) + b
    expected = _normal_log_prob(z) + np.sum(lg - 0.5 * np.log(mv + 1e-5))
    np.testing.assert_allclose(flow.log_prob(x[:5]), expected, rtol=1e-5)
    np.testing.assert_allclose(flow.log_prob(x[:1]), expected[:1], rtol=1e-5)
    if jit:
        path = str(tmp_path / "f.keras")
        flow.save(path)
        loaded = keras.models.load_model(path)
        np.testing.assert_allclose(loaded.flow_layers[0].moving_mean.numpy(), mm)
        np.testing.assert_allclose(loaded.log_prob(x[:5]), expected, rtol=1e-5)


@pytest.mark.parametrize("freeze", ["layer", "flow"])
def test_a_frozen_batchnorm_trains_on_its_moving_statistics_and_keeps_them(freeze):
    # as keras.layers.BatchNormalization: frozen, it runs in inference mode (it took
    # batch statistics and moved its moving ones, so fine-tuning the rest of the flow
    # optimised another density than the one it is used as)
    x = _data()
    flow = kerasflows.Flow([AffineCoupling(), BatchNorm(), AffineCoupling()], event_dim=2)
    flow.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    flow.fit(x, batch_size=64, epochs=1, verbose=0)
    layer = flow.flow_layers[1]
    before = [v.numpy().copy() for v in layer.weights]
    (layer if freeze == "layer" else flow).trainable = False
    flow.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    loss = flow.train_on_batch(x[:64])
    for old, new in zip(before, layer.weights):
        np.testing.assert_array_equal(new.numpy(), old, err_msg=new.path)
    # its training loss is the inference NLL of the batch (before the step moved the rest)
    flow.trainable = True
    flow.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=False)
    layer.trainable = False
    np.testing.assert_allclose(flow.train_on_batch(x[:64]), -np.mean(flow.log_prob(x[:64])),
                               rtol=1e-5)
    assert np.isfinite(loss)


@pytest.mark.parametrize("kwargs,match", [({"momentum": 1.0}, "momentum=1.0"),
                                          ({"momentum": -0.1}, "momentum=-0.1"),
                                          ({"epsilon": 0.0}, "epsilon=0.0"),
                                          ({"epsilon": float("inf")}, "epsilon=inf"),
                                          ({"momentum": None}, "momentum=None"),
                                          ({"momentum": "0.5x"}, "momentum='0.5x'"),
                                          # 0 in float32: a constant column gave NaN
                                          ({"epsilon": 1e-50}, r"> 0 in the layer's dtype, "
                                           r"float32 \(at least 1.175e-38\)\. Received: "
                                           r"epsilon=1e-50")])
def test_batchnorm_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BatchNorm(**kwargs)


def test_normalisation_layers_inside_a_conditional_flow():
    flow = kerasflows.Flow(
        [kerasflows.layers.AffineCoupling(hidden_units=(8,), context_dim=2), BatchNorm(),
         ActNorm()], event_dim=2, context_dim=2)
    x, c = _data(256), np.random.default_rng(1).standard_normal((256, 2)).astype("float32")
    flow.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = flow.fit((x, c), batch_size=128, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert bool(flow.flow_layers[2].initialized.numpy())
    assert np.isfinite(flow.log_prob(x[:4], c[:4]).numpy()).all()


@pytest.mark.parametrize("graph", [False, True])
def test_batchnorm_training_on_no_rows_leaves_moving_statistics(graph):
    # 0 rows have no moments (0 / 0 = NaN): they made every later call NaN
    flow = kerasflows.Flow([BatchNorm()], event_dim=2)
    x = _data(64, 2)
    flow(x, training=True)
    mean, var = flow.flow_layers[0].moving_mean.numpy(), flow.flow_layers[0].moving_variance.numpy()
    before = flow.log_prob(x).numpy()
    call = lambda t: flow(t, training=True)
    if graph:
        call = tf.function(call, input_signature=[tf.TensorSpec([None, 2], "float32")])
    out = call(tf.zeros([0, 2]))
    assert out.shape[0] == 0
    np.testing.assert_array_equal(flow.flow_layers[0].moving_mean.numpy(), mean)
    np.testing.assert_array_equal(flow.flow_layers[0].moving_variance.numpy(), var)
    np.testing.assert_array_equal(flow.log_prob(x).numpy(), before)


def test_actnorm_data_init_on_no_rows_waits_for_a_batch():
    layer = ActNorm(dtype="float64")
    layer.data_init(np.zeros((0, 3)))
    assert not bool(layer.initialized.numpy())
    assert np.all(np.isfinite(layer.data_shift().numpy()))
    x = _data(512, 3, mean=-2.0, std=0.5)
    layer.data_init(x)
    assert bool(layer.initialized.numpy())
    np.testing.assert_allclose(layer.data_shift().numpy(), x.mean(0), atol=1e-6)


def test_actnorm_data_init_keeps_scale_1_for_a_column_constant_in_the_batch():
    x = _data(512, 3, mean=-2.0, std=0.5).astype("float64")
    x[:, 1] = 7.0                               # constant: no spread to standardise
    layer = ActNorm(dtype="float64", name="an")
    with pytest.warns(UserWarning, match=r"ActNorm 'an'.*column 1\b.*flow.initialize\(x\)"):
        layer.data_init(x)
    np.testing.assert_allclose(layer.data_shift().numpy(), x.mean(0), atol=1e-9)
    log_scale = layer.log_scale.numpy()
    assert log_scale[1] == 0.0                  # shifted only
    np.testing.assert_allclose(log_scale[[0, 2]], 0.5 * np.log(x[:, [0, 2]].var(0)))


def test_actnorm_data_init_from_one_row_shifts_only_and_warns_once():
    layer = ActNorm(dtype="float64", name="an")
    with pytest.warns(UserWarning, match=r"columns 0, 1, 2 "):
        layer.data_init(np.array([[1.0, -3.0, 1e6]]))
    np.testing.assert_array_equal(layer.log_scale.numpy(), 0.0)
    np.testing.assert_array_equal(layer.data_shift().numpy(), [1.0, -3.0, 1e6])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer.data_init(np.array([[5.0, 5.0, 5.0]]))    # already initialised: no-op


def test_actnorm_data_init_float32_rounding_of_a_constant_column_counts_as_constant():
    x = np.full((4096, 2), 1234.567, "float32")
    x[:, 0] = _data(4096, 1)[:, 0]
    layer = ActNorm(name="an")
    with pytest.warns(UserWarning, match="column 1 "):
        layer.data_init(x)
    assert layer.log_scale.numpy()[1] == 0.0


def test_actnorm_data_init_of_a_spread_batch_does_not_warn_and_is_unchanged():
    import warnings
    x = _data(64, 3, mean=1e4, std=0.5)
    layer = ActNorm(name="an")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer.data_init(x)
    mean, var = tf.nn.moments(tf.constant(x), axes=[0])
    np.testing.assert_array_equal(layer.data_shift().numpy(), mean.numpy())
    np.testing.assert_array_equal(layer.log_scale.numpy(), (0.5 * tf.math.log(var)).numpy())


def test_fit_with_batch_size_1_on_a_standardized_flow_trains_and_warns():
    x = kerasflows.datasets.load("moons", n=400, seed=0)
    xv = kerasflows.datasets.load("moons", n=1000, seed=1)
    keras.utils.set_random_seed(0)
    flow = kerasflows.models.MAF(2, 2, (16,), standardize=True)
    flow.compile(keras.optimizers.Adam(1e-3))
    with pytest.warns(UserWarning, match=r"'standardize'.*from more rows"):
        flow.fit(x, batch_size=1, epochs=1, verbose=0)
    assert -flow.log_prob(xv).numpy().mean() < 4.0      # was 28,695 nats


@pytest.mark.parametrize("scale", [1e-2, 1e-4, 1e-5])
def test_actnorm_standardizes_a_column_of_small_spread(scale):
    """An absolute epsilon of 1e-6 on the variance left columns of a standard deviation
    below ~1e-3 off unit scale (0.17 at 1e-4), and a flow fitted worse."""
    x = _data(4096, 2, mean=0.0, std=1.0).astype("float64") * scale + 3.0
    layer = ActNorm(dtype="float64")
    layer.data_init(x)
    z, _ = layer.inverse_and_log_det(x)
    np.testing.assert_allclose(np.std(z.numpy(), 0), 1.0, rtol=1e-6)


def test_actnorm_standardizes_columns_of_a_large_offset_in_float64():
    """A fixed relative limit of 1e-6 took float64 columns such as Unix times over an
    hour (std 1e3 at 1.7e9) or UTM northings (std 3 m at 5.4e6) for constant: scale 1,
    and a flow's NLL 5242 where it was 12.3."""
    import warnings
    rng = np.random.default_rng(0)
    x = np.stack([1.7e9 + rng.uniform(0, 3600, 2048), 5.4e6 + 3 * rng.standard_normal(2048),
                  rng.standard_normal(2048)], 1)
    layer = ActNorm(dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer.data_init(x)
    np.testing.assert_allclose(np.exp(layer.log_scale.numpy()), x.std(0), rtol=1e-9)


@pytest.mark.parametrize("scale", [1e-6, 1e-12, 1e-20, 1e-30])
def test_actnorm_standardizes_float32_columns_of_small_spread_near_0(scale):
    """A floor of 1 on the column's size took float32 columns of spread 1e-6 near 0 (all
    values distinct: the dtype resolves them to ~1e-13) for constant: scale 1, a warning
    to use more rows, and a standardized flow 23 nats worse on moons x 1e-6. Below a
    spread of 1e-19 the variance fell under float32's smallest normal number: the same
    (the flow fitted 1e20 times too wide, 90 nats off); in units of a power of two it
    does not."""
    import warnings
    x = (_data(4096, 2, mean=0.5, std=1.0) * scale).astype("float32")
    layer = ActNorm()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer.data_init(x)
    z, _ = layer.inverse_and_log_det(x)
    np.testing.assert_allclose(np.std(z.numpy(), 0), 1.0, rtol=1e-4)


def test_actnorm_standardizes_float64_columns_of_tiny_spread_far_from_0():
    """float64 columns near 1e-146 of relative spread 1e-10 fell between the ranges
    scaled to a power of two (below 2^-492 only) and were called constant."""
    import warnings
    rng = np.random.default_rng(0)
    x = 1e-146 + 1e-156 * rng.standard_normal((4096, 2))
    layer = ActNorm(dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer.data_init(x)
    np.testing.assert_allclose(np.exp(layer.log_scale.numpy()), x.std(0), rtol=1e-6)


def test_actnorm_keeps_scale_1_for_a_column_whose_values_are_below_the_dtypes_normal():
    x = _data(512, 2).astype("float32")
    x[:, 1] *= 1e-40                    # subnormal in float32: a few bits of precision
    layer = ActNorm(name="an")
    with pytest.warns(UserWarning, match="column 1 "):
        layer.data_init(x)
    assert layer.log_scale.numpy()[1] == 0.0 and np.isfinite(layer.log_scale.numpy()).all()


def _standardized_nll_after_training(x, s):
    """Moons' mean NLL, in moons' units, of a standardized NSF trained on `x * s`."""
    keras.utils.set_random_seed(0)
    flow = kerasflows.models.NSF(2, num_layers=1, hidden_units=(8,), standardize=True)
    flow.compile(optimizer=keras.optimizers.Adam(1e-2))
    flow.fit(x * s, batch_size=128, epochs=3, verbose=0, shuffle=False)
    return -flow.log_prob(x * s).numpy().mean() - 2 * np.log(s)


@pytest.fixture(scope="module")
def moons_and_nll_in_its_units():
    """Moons, and the NLL of the flow trained on it as it is (the same for every scale)."""
    x = kerasflows.datasets.load("moons", n=1024, seed=0).astype("float32")
    return x, _standardized_nll_after_training(x, 1.0)


@pytest.mark.parametrize("scale", [1e-5, 1e4])
def test_a_standardized_flow_trains_the_same_in_any_units(scale, moons_and_nll_in_its_units):
    """ActNorm's trainable shift is in standardized units: in data units Adam moved it
    about its learning rate a step, 100 standard deviations for a column of spread 1e-5,
    and a standardized NSF on moons x 1e-5 ended 5 epochs worse than it started."""
    x, unit_nll = moons_and_nll_in_its_units
    nll = [unit_nll, _standardized_nll_after_training(x, scale)]
    assert nll[1] == pytest.approx(nll[0], abs=0.02), nll


def test_an_actnorm_saved_before_shift_units_loads_with_its_numbers(tmp_path):
    """A config without `shift_units` (every ActNorm saved before it existed) is the
    old map `x = z * exp(log_scale) + shift`, three weights, the same log-densities."""
    from keras_files import with_member
    flow = kerasflows.Flow([ActNorm(shift_units="data", name="an")], event_dim=2)
    flow.initialize(_data())
    flow.flow_layers[0].shift.assign([5.5, 4.0])
    x = _data(8, seed=3)
    flow.save(tmp_path / "new.keras")

    def without_shift_units(config):
        assert b', "shift_units": "data"' in config
        return config.replace(b', "shift_units": "data"', b"")
    old = with_member(tmp_path / "new.keras", tmp_path / "old.keras", "config.json",
                      without_shift_units)
    loaded = keras.models.load_model(old)
    layer = loaded.flow_layers[0]
    assert layer.shift_units == "data" and len(layer.weights) == 3
    np.testing.assert_array_equal(loaded.log_prob(x), flow.log_prob(x))
    np.testing.assert_array_equal(layer.data_shift(), [5.5, 4.0])
    assert ActNorm().shift_units == "standardized"
    with pytest.raises(ValueError, match=r"`shift_units` must be .*Received: shift_units='base'"):
        ActNorm(shift_units="base")


def test_actnorm_initialises_from_finite_data_only_and_keeps_a_float32_spread_of_1e19():
    """`Flow.initialize` took NaN rows and data outside the data end's domain that
    `fit` refuses: ActNorm's center and log-scale came out NaN and, initialised
    once, stayed NaN through every later fit. A float32 column of spread 3e19 made
    its variance inf (log_scale inf, every loss NaN)."""
    from kerasflows.layers import Sigmoid
    x = _data(256, 2, mean=0.0, std=1.0)
    bad = x.copy()
    bad[5, 1] = np.nan
    flow = kerasflows.Flow([AffineCoupling(), ActNorm(name="an")], 2)
    with pytest.raises(ValueError, match=r"Flow.initialize's x contains 1 NaN or inf.*rows \[5\]"):
        flow.initialize(bad)
    assert not flow.flow_layers[1].is_data_initialized()
    ends = kerasflows.Flow([ActNorm(), Sigmoid()], 2)
    with pytest.raises(ValueError, match=r"Flow.initialize's x: row \d+, column \d+ .*"
                                         r"outside \(0, 1\)"):
        ends.initialize(x)
    # inside a stack (what the layers after it made of the data): eagerly named, in a
    # graph left uninitialised
    layer = ActNorm(name="inner")
    with pytest.raises(ValueError, match=r"ActNorm 'inner' cannot initialise.*column\(s\) 1 "
                                         r"hold NaN or inf"):
        layer.data_init(tf.constant(bad))
    tf.function(layer.data_init)(tf.constant(bad))
    assert not layer.is_data_initialized()
    layer.data_init(tf.constant(x))
    assert layer.is_data_initialized() and np.isfinite(layer.log_scale.numpy()).all()
    big = x * np.float32(3e19)
    wide = kerasflows.Flow([ActNorm()], 2)
    wide.initialize(big)
    np.testing.assert_allclose(wide.flow_layers[0].log_scale.numpy(),
                               np.log(big.astype(np.float64).std(0)), rtol=1e-5)
    z = wide.inverse(big).numpy()
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1.0, rtol=1e-4)
    assert np.isfinite(wide.log_prob(big).numpy()).all()


def test_float16_layers_take_the_default_epsilon_and_values_beyond_32768():
    """BatchNorm's epsilon floor was float16's smallest normal number, refusing the
    default 1e-5 (a subnormal TensorFlow reads in float32); ActNorm's power-of-two
    unit for values beyond 32768 was 2^16, inf in float16: centre NaN."""
    keras.config.set_dtype_policy("float16")
    try:
        flow = kerasflows.Flow([BatchNorm()], 2)
        assert np.isfinite(flow.log_prob(np.ones((3, 2), "float32")).numpy()).all()
        wide = kerasflows.Flow([ActNorm()], 1)
        x = np.linspace(-5e4, 4e4, 64).astype("float16")[:, None]
        wide.initialize(x)
        layer = wide.flow_layers[0]
        np.testing.assert_allclose(layer.center.numpy(), x.astype(np.float64).mean(0),
                                   rtol=2e-3, atol=30)
        np.testing.assert_allclose(layer.log_scale.numpy(), np.log(x.astype(np.float64).std(0)),
                                   atol=2e-3)
    finally:
        keras.config.set_dtype_policy("float32")
