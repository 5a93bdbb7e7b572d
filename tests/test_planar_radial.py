"""Planar and Radial: forward-only checks, invertibility constraints, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasflows
from kerasflows.layers import ElementwiseAffine, Planar, Radial
from kerasflows.layers.planar import planar_u_hat
from kerasflows.testing import check_flow_layer, perturb_weights


@pytest.mark.parametrize("cls", [Planar, Radial])
@pytest.mark.parametrize("event_dim", [1, 3])
def test_check_flow_layer_forward_only(cls, event_dim):
    report = check_flow_layer(cls(dtype="float64"), event_dim, perturb=0.5, seed=event_dim)
    assert report["inverse_error"] is None  # forward-only: no inverse checks
    assert report["logdet_error"] < 1e-9


@pytest.mark.parametrize("cls", [Planar, Radial])
def test_starts_at_identity(cls):
    layer = cls(dtype="float64")
    z = tf.constant(np.random.default_rng(0).standard_normal((8, 2)))
    x, log_det = layer.forward_and_log_det(z)
    np.testing.assert_allclose(x.numpy(), z.numpy(), atol=1e-12)
    np.testing.assert_allclose(log_det.numpy(), 0.0, atol=1e-12)


def test_planar_constraint_for_extreme_raw_parameters():
    rng = np.random.default_rng(1)
    for _ in range(200):
        scale = 10.0 ** rng.uniform(-3, 3, size=2)
        u = tf.constant(scale[0] * rng.standard_normal(3))
        w = tf.constant(scale[1] * rng.standard_normal(3))
        u_hat, wu_hat = planar_u_hat(u, w)
        assert wu_hat.numpy() >= -1.0
        # the closed-form w . u_hat agrees with the vector (relative to |w||u| rounding)
        err = abs(float(tf.reduce_sum(w * u_hat)) - float(wu_hat))
        assert err <= 1e-9 * (1 + float(tf.norm(w) * tf.norm(u)))
    u_hat, wu_hat = planar_u_hat(tf.constant([1.0, 2.0]), tf.zeros(2))  # w = 0: u_hat = u
    np.testing.assert_allclose(u_hat.numpy(), [1.0, 2.0])


def test_planar_log_det_keeps_its_digits_as_w_dot_u_hat_nears_minus_one():
    """log(1 + tanh' (w . u_hat)) at tanh' = 1 is log(softplus(w . u)): 1 + (-1 +
    softplus) rounded to 0 in float32 (log-det -16.6 for -17.0, -inf at -20)."""
    from kerasflows.layers.planar import PlanarBijector
    for wu in (-10.0, -17.0, -20.0, -60.0):
        b = PlanarBijector(tf.constant([wu, 0.0]), tf.constant([1.0, 0.0]), tf.constant(0.0))
        got = float(b.forward_log_det_jacobian(tf.zeros([1, 2]), event_ndims=1)[0])
        assert got == pytest.approx(float(np.log(np.log1p(np.exp(wu)))), abs=1e-4), wu


@pytest.mark.parametrize("cls", [Planar, Radial])
def test_extreme_weights_keep_the_map_invertible(cls):
    """With raw weights of any size, the Jacobian determinant stays positive."""
    rng = np.random.default_rng(2)
    layer = cls(dtype="float64")
    layer.ensure_built(2)
    z = tf.constant(rng.standard_normal((256, 2)) * 3)
    for _ in range(15):
        scale = 10.0 ** rng.uniform(-2, 2)
        for w in layer.trainable_weights:
            w.assign(scale * rng.standard_normal(w.shape))
        with tf.GradientTape() as tape:
            tape.watch(z)
            x, log_det = layer.forward_and_log_det(z)
        det = np.linalg.det(tape.batch_jacobian(x, z).numpy())
        assert np.all(det > 0)
        finite = np.isfinite(log_det.numpy())
        np.testing.assert_allclose(log_det.numpy()[finite], np.log(det[finite]), rtol=1e-6,
                                   atol=1e-8)


def test_radial_beta_at_least_minus_alpha():
    for raw_a in (-50.0, -1.0, 0.0, 30.0):
        for raw_b in (-50.0, 0.0, 40.0):
            alpha, s = tf.math.softplus(raw_a), tf.math.softplus(raw_b)
            assert float(s - alpha) >= -float(alpha)


@pytest.mark.parametrize("cls", [Planar, Radial])
def test_inverse_and_log_prob_raise_clear_errors(cls):
    flow = kerasflows.Flow([cls(name="only"), cls()], event_dim=2)
    x, log_q = flow.sample_and_log_prob(64, seed=0)
    assert x.shape == (64, 2) and np.all(np.isfinite(log_q.numpy()))
    with pytest.raises(NotImplementedError, match=f"{cls.__name__} 'only'.*sample_and_log_prob"):
        flow.flow_layers[0].inverse_and_log_det(x)
    with pytest.raises(NotImplementedError, match="forward-only.*sample_and_log_prob"):
        flow.log_prob(x)


@pytest.mark.parametrize("cls", [Planar, Radial])
def test_context_is_rejected(cls):
    with pytest.raises(ValueError, match="context_dim=3"):
        cls(context_dim=3)


def test_flow_of_planar_and_radial_saves_and_loads(tmp_path):
    keras.utils.set_random_seed(0)
    layers = [Planar(), Radial(), Planar()]
    flow = kerasflows.Flow(layers, event_dim=2)
    for layer in layers:
        kerasflows.testing.perturb_weights(layer, 0.5, seed=3)
    x, log_q = flow.sample_and_log_prob(32, seed=5)
    np.testing.assert_allclose(flow.sample(32, seed=5).numpy(), x.numpy(), atol=1e-6)
    flow.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    assert [type(l) for l in loaded.flow_layers] == [Planar, Radial, Planar]
    x2, log_q2 = loaded.sample_and_log_prob(32, seed=5)
    np.testing.assert_allclose(x2.numpy(), x.numpy(), atol=1e-6)
    np.testing.assert_allclose(log_q2.numpy(), log_q.numpy(), atol=1e-5)


def test_distribution_log_prob_of_a_forward_only_flow_names_the_layer():
    flow = kerasflows.Flow([Planar(), Radial()], event_dim=2)
    d = flow.distribution
    assert d.sample([2, 3]).shape == (2, 3, 2)
    with pytest.raises(kerasflows.layers.NoInverseError, match="Planar '.*' is forward-only"):
        d.log_prob(np.zeros((3, 2), "float32"))
    with pytest.raises(kerasflows.layers.NoInverseError, match="forward-only"):
        flow.bijector.inverse(np.zeros((3, 2), "float32"))


def _radial_log_det_float64(z, z0, alpha, s):
    """The radial log-det from its definition, in float64 (`r` of moderate size)."""
    r = np.linalg.norm(z - z0, axis=-1)
    beta, h = s - alpha, 1.0 / (alpha + r)
    return ((z.shape[-1] - 1) * np.log1p(beta * h)
            + np.log1p(beta * h - beta * h * h * r))


@pytest.mark.parametrize("raw", [(0.5, -0.3), (2.0, -12.0), (-3.0, 4.0)])
def test_radial_log_det_in_float32_near_and_far(raw):
    # r^2 overflowed float32 from r = 1.8e19 on, and the log-det came out inf - inf = NaN
    layer = Radial()
    layer.ensure_built(3)
    layer.raw_alpha.assign(raw[0])
    layer.raw_beta.assign(raw[1])
    z0 = layer.z0.numpy().astype(np.float64)
    alpha, s = np.log1p(np.exp(raw[0])), np.log1p(np.exp(raw[1]))
    near = z0 + np.array([[0.0, 0.0, 0.0], [1e-3, 0.0, 0.0], [0.3, -0.2, 0.1], [4.0, 1.0, -2.0]])
    _, ld = layer.forward_and_log_det(tf.constant(near, "float32"))
    np.testing.assert_allclose(ld.numpy(), _radial_log_det_float64(near, z0, alpha, s),
                               rtol=1e-5, atol=1e-5)
    far = tf.constant([[1e20, 0.0, 0.0], [-3e30, 2e30, 1e30], [1e38, -1e38, 1e38]], "float32")
    with tf.GradientTape() as tape:
        tape.watch(far)
        x, ld = layer.forward_and_log_det(far)
        total = tf.reduce_sum(ld)
    grad = tape.gradient(total, far)
    assert np.all(np.isfinite(x.numpy())) and np.all(np.isfinite(grad.numpy()))
    np.testing.assert_allclose(ld.numpy(), 0.0, atol=1e-6)   # the map tends to a shift


@pytest.mark.parametrize("cls", [Planar, Radial], ids=["planar", "radial"])
def test_a_float64_layers_bijector_names_its_dtype_and_refuses_float32(cls):
    """Its bijector said dtype None and a float32 input failed inside a matmul
    (InvalidArgumentError "expected double"); it is float64, as the stock TFP
    bijectors of float64 layers are, and TFP names the mismatch."""
    layer = cls(dtype="float64")
    layer.build((None, 3))
    b = layer.bijector()
    assert isinstance(b.inner.dtype, tf.DType) and b.dtype == tf.float64   # not "float64"
    assert b.forward(np.zeros((2, 3))).dtype == tf.float64
    with pytest.raises(ValueError, match="requested dtype float64 for Tensor with dtype float32"):
        b.forward(tf.zeros((2, 3)))


@pytest.mark.parametrize("layers", [lambda: [Planar(), Planar()],
                                    lambda: [ElementwiseAffine(), Planar()]],
                         ids=["planar-planar", "affine-planar"])
def test_a_chain_with_a_planar_layer_samples_and_scores_through_tfp(layers):
    """PlanarBijector named its dtype as the string 'float32' (a Keras weight's
    dtype), and TFP's Chain of it failed: "Cannot convert 'float32' to EagerTensor"."""
    flow = kerasflows.Flow(layers(), 2)
    perturb_weights(flow, 0.3)
    d = flow.distribution
    assert d.sample(5, seed=1).shape == (5, 2)
    x, got = d.experimental_sample_and_log_prob(5, seed=3)
    np.testing.assert_allclose(d.log_prob(x), got, rtol=1e-5, atol=1e-5)   # (TFP's cache)
    assert np.isfinite(got.numpy()).all()
    # the bijector's inverse log-det at a live output of its forward is -fldj there (it
    # raised NoInverseError, though inverse(y) answered from TFP's cache); elsewhere not
    for b in (flow.bijector, flow.flow_layers[-1].bijector()):
        z = tf.constant(np.random.default_rng(0).normal(size=(3, 2)).astype("float32"))
        y = b.forward(z)
        np.testing.assert_allclose(b.inverse_log_det_jacobian(y, event_ndims=1),
                                   -b.forward_log_det_jacobian(z, event_ndims=1), rtol=1e-6)
        with pytest.raises(NotImplementedError, match="forward-only"):
            b.inverse_log_det_jacobian(tf.zeros([3, 2]), event_ndims=1)
