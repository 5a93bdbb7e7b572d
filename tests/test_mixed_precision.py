"""Mixed precision: a flow's own arithmetic stays float32; only conditioners run in
float16 / bfloat16, and float16 training scales the loss."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasflows
from kerasflows import layers as L
from kerasflows import models as M
from kerasflows.layers.made import MADE
from kerasflows.layers.nets import MLP
from kerasflows.testing import check_flow_layer, perturb_weights
from kerasflows.training import make_train_step
from registry import FLOWS, LAYERS

POLICIES = ["mixed_float16", "mixed_bfloat16"]
LOW = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


@pytest.fixture
def policy(request):
    """Sets the global dtype policy for one test (and restores float32)."""
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy("float32")


def _conditioners(layer):
    return [l for l in layer._flatten_layers(include_self=False) if isinstance(l, (MLP, MADE))]


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("mixed", POLICIES)
def test_layers_made_with_a_mixed_dtype_compute_in_float32(name, mixed):
    # seeded: the initial weights were whatever the xdist worker's global generator
    # held, and one draw in a full CI run (bfloat16 spline_coupling_forward) left
    # forward and inverse log-dets 0.005 apart, over the 1e-3 bound (0 of 30 seeds did)
    keras.utils.set_random_seed(0)
    layer = LAYERS[name][0](None, mixed)
    report = check_flow_layer(layer, 3, perturb=0.2)   # float32 tolerances
    assert report["logdet_error"] <= 1e-3
    assert layer.dtype_policy.name == "float32" and layer.compute_dtype == "float32"
    assert layer.conditioner_dtype_policy.name == mixed
    for net in _conditioners(layer):
        assert net.compute_dtype == LOW[mixed]
        assert all(w.dtype == "float32" for w in net.weights)


@pytest.mark.parametrize("name", sorted(FLOWS))
@pytest.mark.parametrize("policy", POLICIES, indirect=True)
def test_flows_under_a_global_mixed_policy(name, policy):
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy("float32")
    reference = FLOWS[name](2, None, None)
    perturb_weights(reference, 0.2, seed=1)
    keras.config.set_dtype_policy(policy)
    flow = FLOWS[name](2, None, None)
    flow.set_weights(reference.get_weights())
    assert flow.dtype_policy.name == "float32"
    assert all(l.compute_dtype == "float32" for l in flow.flow_layers)
    nets = [n for l in flow.flow_layers for n in _conditioners(l)]
    assert nets and all(n.compute_dtype == LOW[policy] for n in nets)

    x = np.random.default_rng(0).normal(size=(64, 2)).astype("float32")
    lp = flow.log_prob(x)
    assert lp.dtype == tf.float32
    # the same function as the float32 flow, up to the conditioners' rounding
    # (float16 keeps 11 significant bits, bfloat16 8)
    rtol = {"mixed_float16": 5e-3, "mixed_bfloat16": 2e-2}[policy]
    np.testing.assert_allclose(lp.numpy(), reference.log_prob(x).numpy(), rtol=rtol, atol=rtol)
    # computed wholly in float16 these gave -inf / NaN; bfloat16 conditioners have
    # float32's range; float16 ones overflow where a conditioner's input (a data
    # point or a state between layers) nears float16's 65,504
    far = np.array([[1e3, -1e3], [-1e3, 0.0], [0.0, 1e3], [50.0, -7.0], [-300.0, 20.0]],
                   "float32")
    if policy == "mixed_float16":
        far = far / 30
    assert np.all(np.isfinite(flow.log_prob(far).numpy()))
    samples, lq = flow.sample_and_log_prob(200, seed=0)
    assert samples.dtype == tf.float32 and np.all(np.isfinite(lq.numpy()))
    # coupling flows agree to float32 rounding; autoregressive ones to the conditioners'
    # precision where an input of a sample's round trip rounds the other way
    np.testing.assert_allclose(flow.log_prob(samples).numpy(), lq.numpy(), rtol=rtol,
                               atol=10 * rtol)


@pytest.mark.parametrize("policy", ["mixed_bfloat16"], indirect=True)
def test_autoregressive_sampling_inverts_exactly_with_low_precision_made(policy):
    keras.utils.set_random_seed(0)
    # MADE.solve sums in another order than a network pass (bfloat16: params off by
    # ~1e-2); with a low-precision MADE the passes are used, which the density
    # direction repeats bit for bit
    flow = M.MAF(8, num_layers=2, hidden_units=(32,))
    keras.config.set_dtype_policy("float32")
    reference = M.MAF(8, num_layers=2, hidden_units=(32,))
    perturb_weights(reference, 0.3, seed=2)
    flow.set_weights(reference.get_weights())
    layer = flow.flow_layers[0]
    assert layer.event_dim >= layer.SOLVE_MIN_DIM
    z = tf.constant(np.random.default_rng(1).normal(size=(100, 8)), "float32")

    def round_trip_errors(f):
        x, ld = f.forward_and_log_det(z)
        z2, ild = f.inverse_and_log_det(x)
        return np.abs(z2 - z).max(), np.abs(ild + ld).max()
    (err, ld_err), (err32, ld_err32) = round_trip_errors(flow), round_trip_errors(reference)
    # as exact as the float32 flow's round trip (the elementwise map's float32 rounding)
    assert err <= 2 * err32 + 1e-6 and ld_err <= 2 * ld_err32 + 1e-6, (err, err32)
    # MADE.solve on its own, in bfloat16: the same map up to bfloat16 rounding
    made = layer.made
    y, _ = made.solve(lambda p, v: (v * tf.exp(0.1 * p[:, 1]) + p[:, 0], tf.zeros([100])), z)
    y_passes = tf.zeros_like(z)
    for _ in range(8):
        p = tf.cast(made(y_passes, params_first=True), "float32")
        y_passes = z * tf.exp(0.1 * p[:, 1]) + p[:, 0]
    assert y.dtype == tf.float32
    np.testing.assert_allclose(y.numpy(), y_passes.numpy(), atol=0.1)


def _sgd_step_change(policy, train):
    """The weight change of one SGD step (lr 0.05) of a small RealNVP made under `policy`."""
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        flow = M.RealNVP(2, num_layers=2, hidden_units=(16,))
        perturb_weights(flow, 0.2, seed=3)
        before = [w.numpy().copy() for w in flow.trainable_weights]
        x = kerasflows.datasets.load("moons", n=512, seed=0)
        train(flow, x)
        return np.concatenate([(w.numpy() - b).ravel()
                               for w, b in zip(flow.trainable_weights, before)])
    finally:
        keras.config.set_dtype_policy("float32")


def _optimizer(flow):
    sgd = keras.optimizers.SGD(0.05)
    if not flow.float16_conditioners():
        return sgd
    # a scale whose first step does not overflow (the default 2^15 skips some steps)
    return keras.optimizers.LossScaleOptimizer(sgd, initial_scale=64.0)


def _fit(flow, x):
    flow.compile(optimizer=_optimizer(flow), jit_compile=False)   # XLA: the other cases
    flow.fit(x, batch_size=512, epochs=1, verbose=0)


def _step(flow, x):
    assert np.isfinite(float(make_train_step(flow, _optimizer(flow))(x)))


def _sharded_step(flow, x):
    assert np.isfinite(float(make_train_step(flow, _optimizer(flow), shards=2)(x)))


def _variational(flow, x):
    vi = kerasflows.VariationalFlow(flow, "u1", batch_size=256)
    vi.compile(optimizer=_optimizer(flow))
    vi.fit(epochs=1, steps_per_epoch=1, verbose=0)


@pytest.mark.parametrize("train", [_fit, _step, _sharded_step, _variational],
                         ids=["fit", "make_train_step", "shards=2", "VariationalFlow"])
def test_float16_training_scales_the_loss_and_takes_the_float32_step(train):
    want = _sgd_step_change("float32", train)
    got = _sgd_step_change("mixed_float16", train)
    # a gradient of the unscaled loss, unscaled, would be 64 times too small; a
    # scaled one is the float32 gradient up to float16 rounding
    assert np.abs(want).max() > 1e-3
    np.testing.assert_allclose(got, want, atol=0.02 * np.abs(want).max())


@pytest.mark.parametrize("policy", POLICIES, indirect=True)
def test_fit_under_mixed_policy_trains(policy):
    keras.utils.set_random_seed(0)
    x = kerasflows.datasets.load("moons", n=4096, seed=0)
    flow = M.NSF(2, num_layers=2, hidden_units=(32, 32))
    flow.compile(optimizer=keras.optimizers.Adam(3e-3))
    assert isinstance(flow.optimizer, keras.optimizers.LossScaleOptimizer) == (
        policy == "mixed_float16")
    loss = flow.fit(x, batch_size=256, epochs=4, verbose=0).history["loss"]
    assert np.all(np.isfinite(loss)) and loss[-1] < loss[0] - 0.2
    step = make_train_step(flow, keras.optimizers.Adam(1e-3))
    losses = [float(step(x[i:i + 256])) for i in range(0, 2048, 256)]
    assert np.all(np.isfinite(losses))
    if policy == "mixed_float16":
        flow.compile(optimizer=keras.optimizers.Adam(1e-3), auto_scale_loss=False)
        assert not isinstance(flow.optimizer, keras.optimizers.LossScaleOptimizer)


def test_loss_scaling_is_refused_for_float16_ode_dynamics_naming_the_ways_out(tmp_path):
    """A ContinuousFlow's float16 adjoint solve never returned once the scaled
    gradients overflowed (a step at the first scale ran for minutes): compile and
    make_train_step refuse loss scaling for it, naming the two ways out."""
    from kerasflows.layers import AffineCoupling, ContinuousFlow
    layers = [ContinuousFlow(hidden_units=(8,), conditioner_dtype="mixed_float16",
                             name="ode"), AffineCoupling(hidden_units=(8,))]
    flow = kerasflows.Flow(layers, event_dim=2)
    says = (r"ContinuousFlow layer\(s\) \['ode'\] compute their dynamics in float16.*"
            r"auto_scale_loss=False .*conditioner_dtype=\"float32\"")
    with pytest.raises(ValueError, match=says):
        flow.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert not flow.compiled                          # refused before Keras compiled it
    with pytest.raises(ValueError, match=says):
        flow.compile(optimizer="adam")
    with pytest.raises(ValueError, match=says):
        flow.compile(optimizer=keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam()),
                     auto_scale_loss=False)
    with pytest.raises(ValueError, match=says):
        make_train_step(flow, keras.optimizers.Adam(1e-3))
    flow.compile(optimizer=keras.optimizers.Adam(1e-3), auto_scale_loss=False)
    assert not isinstance(flow.optimizer, keras.optimizers.LossScaleOptimizer)
    # a file saved compiled with loss scaling (before compile refused it) still loads:
    # compiled without it, with a warning (the refusal failed the load)
    flow._compile_config.config["auto_scale_loss"] = True
    flow.save(tmp_path / "ode.keras")
    with pytest.warns(UserWarning, match=r"was saved compiled with loss scaling.*loads "
                                         r"compiled with auto_scale_loss=False"):
        loaded = kerasflows.load(tmp_path / "ode.keras")
    assert loaded.compiled
    assert not isinstance(loaded.optimizer, keras.optimizers.LossScaleOptimizer)
    # and one compiled with a LossScaleOptimizer given wrapped (auto_scale_loss=False)
    flow._compile_config.config.update(
        auto_scale_loss=False,
        optimizer=keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3)))
    flow.save(tmp_path / "wrapped.keras")
    with pytest.warns(UserWarning, match=r"its optimizer state afresh"):
        loaded = kerasflows.load(tmp_path / "wrapped.keras")
    assert isinstance(loaded.optimizer, keras.optimizers.Adam)

    class MyODE(ContinuousFlow):            # a subclass is one too
        pass
    mine = kerasflows.Flow([MyODE(hidden_units=(8,), conditioner_dtype="mixed_float16")], 2)
    with pytest.raises(ValueError, match=r"ContinuousFlow layer\(s\) \['my_ode'\]"):
        mine.compile(optimizer="adam")
    float32_ode = kerasflows.Flow([ContinuousFlow(hidden_units=(8,)),
                                   AffineCoupling(hidden_units=(8,),
                                                  conditioner_dtype="mixed_float16")],
                                  event_dim=2)
    float32_ode.compile(optimizer=keras.optimizers.Adam(1e-3))        # the coupling's scaled
    assert isinstance(float32_ode.optimizer, keras.optimizers.LossScaleOptimizer)


def test_saved_flow_keeps_its_conditioner_policy(tmp_path):
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        flow = M.MAF(3, num_layers=2, hidden_units=(16,))
        perturb_weights(flow, 0.2)
    finally:
        keras.config.set_dtype_policy("float32")
    flow.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    x = np.random.default_rng(0).normal(size=(20, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.log_prob(x).numpy(), flow.log_prob(x).numpy())
    for layer in loaded.flow_layers:
        assert layer.compute_dtype == "float32"
        if _conditioners(layer):
            assert layer.conditioner_dtype_policy.name == "mixed_bfloat16"
            assert all(n.compute_dtype == "bfloat16" for n in _conditioners(layer))


def test_saved_float16_flow_loads_with_its_loss_scale_optimizer(tmp_path):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        flow = M.MAF(2, num_layers=2, hidden_units=(16,))
    finally:
        keras.config.set_dtype_policy("float32")
    # a plain graph step: what is tested is the optimizer saved and loaded (XLA would
    # compile the step twice, for the flow and for the loaded one)
    flow.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    x = np.random.default_rng(0).normal(size=(512, 2)).astype("float32")
    flow.fit(x, batch_size=128, epochs=1, shuffle=False, verbose=0)
    flow.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    assert isinstance(loaded.optimizer, keras.optimizers.LossScaleOptimizer)
    assert float(loaded.optimizer.dynamic_scale) == float(flow.optimizer.dynamic_scale)
    assert int(loaded.optimizer.iterations.numpy()) == 4
    want = flow.fit(x, batch_size=128, epochs=1, shuffle=False, verbose=0).history["loss"]
    got = loaded.fit(x, batch_size=128, epochs=1, shuffle=False, verbose=0).history["loss"]
    assert got == pytest.approx(want, rel=1e-6)


def test_a_float32_flow_loaded_under_a_global_float16_policy_keeps_its_optimizer(tmp_path):
    """A Sequential encoder's container and InputLayer take the global policy when
    loaded (Keras saves no policy for them): a float32 flow loaded under
    mixed_float16 wrapped its optimizer for loss scaling and dropped the saved Adam
    state. Only layers that compute count; a float16 Dense in the encoder does."""
    encoder = lambda dtype: keras.Sequential([keras.Input((2,)), keras.layers.Dense(4, dtype=dtype)])
    build = lambda dtype: M.MAF(2, num_layers=1, hidden_units=(8,), context_dim=2,
                                context_encoder=encoder(dtype))
    flow = build("float32")
    flow.compile(optimizer="adam", jit_compile=False)
    rng = np.random.default_rng(0)
    x, c = rng.normal(size=(64, 2)).astype("float32"), rng.normal(size=(64, 2)).astype("float32")
    flow.fit((x, c), batch_size=32, epochs=1, verbose=0)
    flow.save(tmp_path / "f.keras")
    keras.config.set_dtype_policy("mixed_float16")
    try:
        loaded = keras.models.load_model(tmp_path / "f.keras")
        made_under_it = M.MAF(2, num_layers=1, hidden_units=(8,), context_dim=2, dtype="float32",
                              context_encoder=encoder("float32"))
    finally:
        keras.config.set_dtype_policy("float32")
    assert not loaded.float16_conditioners() and not made_under_it.float16_conditioners()
    assert type(loaded.optimizer) is keras.optimizers.Adam
    assert int(loaded.optimizer.iterations.numpy()) == 2
    for a, b in zip(loaded.optimizer.variables, flow.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert build("mixed_float16").float16_conditioners()


def test_conditioner_dtype_can_be_chosen_per_layer():
    layer = L.AffineCoupling(hidden_units=(8,), conditioner_dtype="mixed_bfloat16")
    assert layer.compute_dtype == "float32"
    config = layer.get_config()
    assert config["conditioner_dtype"] == "mixed_bfloat16"
    clone = L.AffineCoupling.from_config(config)
    clone.ensure_built(4)
    assert clone.net.compute_dtype == "bfloat16"
    plain = L.AffineCoupling(hidden_units=(8,))
    assert "conditioner_dtype" not in plain.get_config()
    plain.ensure_built(4)
    assert plain.net.compute_dtype == "float32"
    with pytest.raises(ValueError, match="float17"):
        L.AffineCoupling(conditioner_dtype="float17")


@pytest.mark.parametrize("policy", POLICIES, indirect=True)
def test_class_labels_read_their_own_row_under_a_mixed_policy(policy):
    """Keras casts float inputs to the compute dtype: float16 holds whole numbers to
    2048 only, bfloat16 to 256, so labels above read a neighbour's row (or NaN)."""
    from kerasflows.layers import ClassEmbedding, MaskedAutoregressive
    embedding = ClassEmbedding(5000, features=4)
    labels = np.array([[257.0], [2049.0], [4003.0], [4999.0]], "float32")
    table = embedding.table.numpy()
    np.testing.assert_allclose(embedding(labels).numpy().astype("float32"),
                               table[[257, 2049, 4003, 4999]].astype(LOW[policy]).astype(
                                   "float32"))
    flow = kerasflows.Flow([MaskedAutoregressive(hidden_units=(8,), context_dim=4)],
                           event_dim=2, context_dim=1,
                           context_encoder=ClassEmbedding(5000, features=4))
    perturb_weights(flow.flow_layers[0], 0.3, seed=0)
    x = np.full((3, 2), 0.3, "float32")
    by_float = flow.log_prob(x, context=np.array([[2048.0], [2049.0], [2050.0]], "float32"))
    by_int = flow.log_prob(x, context=np.array([[2048], [2049], [2050]], "int32"))
    np.testing.assert_array_equal(by_float, by_int)
    assert len(set(by_float.numpy().tolist())) == 3


def test_fit_and_evaluate_take_bfloat16_data():
    # bfloat16 (ml_dtypes) is not an np.number: fit, evaluate and sample weights in it
    # were refused as "not numeric", where log_prob and predict took them
    import ml_dtypes
    x = np.random.default_rng(0).normal(size=(64, 2)).astype(ml_dtypes.bfloat16)
    flow = M.RealNVP(2, num_layers=1, hidden_units=(4,))
    flow.compile(optimizer="adam", jit_compile=False)
    w = np.ones(64, ml_dtypes.bfloat16)
    for data in (x, tf.constant(x)):
        loss = flow.fit(data, sample_weight=w, batch_size=32, epochs=1, verbose=0)
        assert np.isfinite(loss.history["loss"][0])
        assert np.isfinite(flow.evaluate(data, batch_size=32, verbose=0))
    bad = x.copy()
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match=r"NaN or inf values \(first in rows \[3\]\)"):
        flow.fit(bad, epochs=1, verbose=0)
    from kerasflows.data_warnings import numeric
    assert numeric(ml_dtypes.bfloat16) and numeric("float16") and numeric("uint8")
    assert not numeric(object) and not numeric("U3") and not numeric([("a", "f4")])


def test_saved_float16_flow_compiled_without_loss_scaling_loads_without_it(tmp_path):
    # auto_scale_loss=False was not saved: the loaded flow got a LossScaleOptimizer,
    # and Keras skipped loading the saved Adam's state into it
    flow = M.MAF(2, num_layers=2, hidden_units=(4,), dtype="mixed_float16")
    flow.compile(optimizer=keras.optimizers.Adam(3e-3), auto_scale_loss=False)
    x = np.random.default_rng(0).normal(size=(64, 2)).astype("float32")
    flow.fit(x, batch_size=16, epochs=1, shuffle=False, verbose=0)
    flow.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    assert type(loaded.optimizer) is keras.optimizers.Adam
    assert int(loaded.optimizer.iterations.numpy()) == 4
    for a, b in zip(loaded.optimizer.variables, flow.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
