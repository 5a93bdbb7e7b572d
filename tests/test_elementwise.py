"""What is special to the elementwise layers: their formulas, and `Logit` on (0, 1).

The conformance suite checks Sigmoid, Exp and ElementwiseAffine at event_dim
2 and 5; here they are checked at 3, and Logit at 2, 3 and 5 through
`check_flow_layer(inputs=...)`.
"""

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
