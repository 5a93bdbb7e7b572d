"""What is special to the elementwise layers: their formulas, and `Logit` on (0, 1).

The conformance suite checks Sigmoid, Exp and ElementwiseAffine at event_dim
2 and 5; here they are checked at 3, and Logit at 2, 3 and 5 through
`check_flow_layer(inputs=...)`.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasflows
from kerasflows.layers import ElementwiseAffine, Exp, Logit, Sigmoid
from kerasflows.testing import check_flow_layer, perturb_weights

DTYPES = ["float32", "float64"]


def _z(dim, dtype="float64", n=16, seed=0):
    return tf.constant(1.5 * np.random.default_rng(seed).standard_normal((n, dim)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", [Sigmoid, Exp, ElementwiseAffine])
def test_check_flow_layer(cls, dtype):
    report = check_flow_layer(cls(dtype=dtype), 3, perturb=0.3)
    if dtype == "float64":
        assert report["inverse_error"] <= 1e-5 and report["logdet_error"] <= 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [2, 3, 5])
def test_logit_check_on_unit_interval(dim, dtype):
    inputs = np.random.default_rng(dim).uniform(0.02, 0.98, (16, dim))
    report = check_flow_layer(Logit(dtype=dtype), dim, inputs=inputs)
    if dtype == "float64":
        assert report["inverse_error"] <= 1e-5 and report["logdet_error"] <= 1e-6


def test_check_flow_layer_rejects_inputs_of_wrong_shape():
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        check_flow_layer(Logit(), 3, inputs=np.full((4, 2), 0.5))


def test_sigmoid_and_logit_formulas():
    z = _z(3)
    x, ld = Sigmoid(dtype="float64").forward_and_log_det(z)
    s = 1 / (1 + np.exp(-z.numpy()))
    np.testing.assert_allclose(x, s, atol=1e-12)
    np.testing.assert_allclose(ld, np.sum(np.log(s * (1 - s)), -1), atol=1e-10)
    y, lld = Logit(dtype="float64").forward_and_log_det(x)
    np.testing.assert_allclose(y, z, atol=1e-10)
    np.testing.assert_allclose(lld, -ld, atol=1e-10)


def test_exp_formula():
    z = _z(2)
    x, ld = Exp(dtype="float64").forward_and_log_det(z)
    np.testing.assert_allclose(x, np.exp(z.numpy()), rtol=1e-12)
    np.testing.assert_allclose(ld, np.sum(z.numpy(), -1), atol=1e-12)


def test_elementwise_affine_formula():
    layer = ElementwiseAffine(dtype="float64")
    layer.ensure_built(3)
    layer.shift.assign([1.0, -2.0, 0.5])
    layer.log_scale.assign([0.3, -0.7, 0.0])
    z = _z(3)
    x, ld = layer.forward_and_log_det(z)
    np.testing.assert_allclose(x, z.numpy() * np.exp([0.3, -0.7, 0.0]) + [1.0, -2.0, 0.5],
                               atol=1e-12)
    np.testing.assert_allclose(ld, -0.4, atol=1e-12)


def test_sigmoid_flow_samples_lie_in_unit_interval(tmp_path):
    flow = kerasflows.Flow([ElementwiseAffine(), Sigmoid()], event_dim=2)
    perturb_weights(flow, 1.0, seed=0)
    x = flow.sample(200, seed=0).numpy()
    assert np.all((x > 0) & (x < 1))
    path = str(tmp_path / "f.keras")
    flow.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.log_prob(x), flow.log_prob(x), atol=1e-5)


def _fit_flow(last):
    keras.utils.set_random_seed(0)
    flow = kerasflows.Flow([kerasflows.layers.AffineCoupling(hidden_units=(8,)), last], 2)
    flow.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    return flow


@pytest.mark.parametrize("last, x", [
    (Sigmoid, np.random.default_rng(0).beta(2, 5, (256, 2))),
    (Exp, np.random.default_rng(0).lognormal(0, 0.5, (256, 2)))], ids=["sigmoid", "exp"])
def test_fit_refuses_data_outside_the_data_end_layers_domain(last, x):
    """One value on the edge of Sigmoid's (0, 1) or Exp's (0, inf) turned every
    weight NaN in `fit`, silently; it is refused before training, by row, column
    and value, as NaN is. `predict`, like `log_prob`, gives NaN for its row."""
    x = x.astype("float32")
    domain = "(0, 1)" if last is Sigmoid else "(0, inf)"
    flow = _fit_flow(last(name="end"))
    before = [w.numpy() for w in flow.weights]
    bad = x.copy()
    bad[5, 1] = 0.0
    with pytest.raises(ValueError, match=(
            rf"training data: row 5, column 1 is 0\.0, outside {re.escape(domain)}, the "
            rf"domain of the flow's data end, {last.__name__} 'end'.*1 such value")):
        flow.fit(bad, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"validation data: row 5, column 1 is 0\.0"):
        flow.fit(x, validation_data=bad, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"evaluate's data: row 5, column 1 is 0\.0"):
        flow.evaluate(bad, verbose=0)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, flow.weights))
    log_p = flow.predict(bad, verbose=0)
    assert np.isnan(log_p[5]) and np.isfinite(np.delete(log_p, 5)).all()
    assert np.isfinite(flow.fit(x, validation_data=x, epochs=1, verbose=0)
                       .history["loss"]).all()
    assert all(np.isfinite(w.numpy()).all() for w in flow.weights)


def test_subnormal_values_are_refused_as_the_zero_tensorflow_reads():
    """TensorFlow reads subnormal numbers as 0 on CPUs (`1e-310 > 0` is False there in
    float64): a float64 flow ending in Exp took 1e-310 as inside (0, inf), as NumPy
    does, and its first step made every weight NaN. Such values are refused as 0."""
    x = np.random.default_rng(0).uniform(0.1, 0.9, (128, 2))
    said = (r"row 4, column 1 is 9\.9999\d*e-41 \(0\.0 as float32, a subnormal number, which "
            r"TensorFlow reads as 0 on CPUs\), outside \(0, 1\)")
    bad = x.astype("float32")
    bad[4, 1] = 1e-40
    flow = _fit_flow(Sigmoid(name="end"))
    with pytest.raises(ValueError, match=said):
        flow.fit(bad, epochs=1, verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"hold values outside \(0, 1\)"):
        flow.fit(tf.data.Dataset.from_tensor_slices(bad).batch(64), epochs=1, verbose=0)
    keras.config.set_floatx("float64")
    try:
        keras.utils.set_random_seed(0)
        flow = kerasflows.Flow([kerasflows.layers.AffineCoupling(hidden_units=(8,),
                                                                dtype="float64"),
                                Exp(name="end", dtype="float64")], 2, dtype="float64")
        flow.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
        bad = x.copy()
        bad[4, 1] = 1e-310
        with pytest.raises(ValueError, match=r"row 4, column 1 is 1e-310 \(0\.0 as float64, a "
                           r"subnormal number"):
            flow.fit(bad, epochs=1, verbose=0)
        assert np.isfinite(flow.fit(x, epochs=1, verbose=0).history["loss"]).all()
    finally:
        keras.config.set_floatx("float32")
    # float16 computes in float32, where its subnormal numbers are normal ones
    from kerasflows.data_checks import subnormal_below
    assert subnormal_below("float16") == 0.0 and subnormal_below("bfloat16") > 0.0


def test_the_domain_is_of_the_values_the_flow_sees():
    """A float64 value just below 1 is 1.0 once Keras casts it to float32 (as it
    does array data), and a sigmoid's inverse is inf there: it is refused, named
    with both values. Logit's and an affine map's data side are all reals."""
    x = np.random.default_rng(0).uniform(0.1, 0.9, (128, 2))
    x[3, 0] = 1 - 1e-10
    flow = _fit_flow(Sigmoid(name="end"))
    with pytest.raises(ValueError, match=r"row 3, column 0 is 0\.9999999999 \(1\.0 as "
                       r"float32\), outside \(0, 1\)"):
        flow.fit(x, epochs=1, verbose=0)
    assert Logit().data_domain == ElementwiseAffine().data_domain == (-np.inf, np.inf)
