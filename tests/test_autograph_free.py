"""A user's own `tf.function` (AutoGraph on) calls kerasflows as written
(`kerasflows.autograph_free`): nothing of ours is converted, the results are
the eager ones, and the user's own code inside is still converted."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow.python.autograph.impl import api as autograph_api

import kerasflows
from kerasflows.autograph_free import ENTRY_POINTS


@pytest.fixture
def converted(monkeypatch):
    """The qualified names of the functions AutoGraph converts while the test runs."""
    names = []
    convert = autograph_api._convert_actual

    def spy(entity, program_ctx):
        names.append(f"{getattr(entity, '__module__', '?')}.{entity.__qualname__}")
        return convert(entity, program_ctx)

    monkeypatch.setattr(autograph_api, "_convert_actual", spy)
    return names


def _ours(names):
    return [n for n in names if n.startswith("kerasflows")]


@pytest.mark.parametrize("family", ["RealNVP", "NSF", "MAF"])
def test_a_users_tf_function_converts_nothing_of_kerasflows(family, converted):
    flow = getattr(kerasflows.models, family)(2, num_layers=2, hidden_units=(8,))
    x = tf.constant(np.random.default_rng(0).normal(size=(5, 2)), tf.float32)
    layer = flow.flow_layers[0]

    def user(x):            # the user's code: converted
        z, log_det = layer.inverse_and_log_det(x)
        back = flow.bijector.forward(flow.inverse(x))
        return flow.log_prob(x), z, log_det, back, flow.sample(3, seed=1)

    got = tf.function(user)(x)
    assert _ours(converted) == [], "AutoGraph rewrote kerasflows' functions"
    assert any(n.endswith("user") for n in converted), "the user's function was converted"
    want = user(x)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-5)


def test_a_users_autograph_code_inside_a_custom_layer_is_still_converted(converted):
    @tf.function     # AutoGraph's Python `if` on a tensor: fails unconverted
    def shift_of(v):
        if tf.reduce_sum(v) > 0:
            return v
        return -v

    class FlipShift(kerasflows.layers.FlowLayer):
        def build_flow(self, event_dim):
            self.v = self.add_weight(shape=(event_dim,), initializer="ones")

        def bijector(self, context=None):
            return tfp.bijectors.Shift(shift_of(-self.v))

    assert hasattr(FlipShift.bijector, "autograph_info__"), "a subclass's entry point is marked"
    layer = FlipShift()
    z = tf.zeros([2, 3])
    x = tf.function(lambda z: layer.forward_and_log_det(z)[0])(z)
    np.testing.assert_array_equal(x.numpy(), np.ones([2, 3], np.float32))
    assert _ours(converted) == []
    assert any(n.endswith("shift_of") for n in converted)


def test_every_entry_point_a_shipped_layer_or_flow_defines_is_marked():
    classes = [kerasflows.Flow, kerasflows.VariationalFlow] + [
        c for c in vars(kerasflows.layers).values()
        if isinstance(c, type) and issubclass(c, kerasflows.layers.FlowLayer)]
    assert len(classes) > 10
    seen = 0
    for cls in classes:
        for klass in cls.__mro__:
            for name in ENTRY_POINTS & set(vars(klass)):
                fn = vars(klass)[name]
                if callable(fn):
                    seen += 1
                    assert hasattr(fn, "autograph_info__"), f"{klass.__qualname__}.{name}"
    assert seen > 20
