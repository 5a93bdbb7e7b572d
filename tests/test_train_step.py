"""make_train_step: the compiled one-step training function used by hand-written loops."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasflows import datasets
from kerasflows import models as M
from kerasflows.training import make_train_step


def _flow(recipe="RealNVP", **kwargs):
    keras.utils.set_random_seed(0)
    return getattr(M, recipe)(2, num_layers=2, hidden_units=(16,), **kwargs)


def _keras_adam_losses(flow, batches, optimizer):
    """Reference: the same steps with a plain tape and optimizer.apply_gradients."""
    losses = []
    for xb in batches:
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(flow.log_prob(xb))
        grads = tape.gradient(loss, flow.trainable_variables)
        optimizer.apply_gradients(zip(grads, flow.trainable_variables))
        losses.append(float(loss))
    return losses


@pytest.mark.parametrize("recipe", ["RealNVP", "MAF"])
def test_fused_adam_step_matches_keras_adam(recipe):
    x = datasets.load("moons", n=4 * 128, seed=0)
    batches = np.split(x, 4)
    ref = _flow(recipe)
    ref_losses = _keras_adam_losses(ref, batches, keras.optimizers.Adam(1e-2))
    flow = _flow(recipe)
    opt = keras.optimizers.Adam(1e-2)
    step = make_train_step(flow, opt)
    losses = [float(step(xb)) for xb in batches]
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4, atol=1e-5)
    for a, b in zip(flow.trainable_variables, ref.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-5)
    assert int(opt.iterations.numpy()) == 4
    assert losses[-1] < losses[0]


def test_other_optimizers_use_their_own_update():
    x = datasets.load("eight_gaussians", n=256, seed=0)
    ref = _flow()
    ref_losses = _keras_adam_losses(ref, [x, x], keras.optimizers.SGD(0.05, momentum=0.9))
    flow = _flow()
    step = make_train_step(flow, keras.optimizers.SGD(0.05, momentum=0.9), jit_compile=False)
    np.testing.assert_allclose([float(step(x)), float(step(x))], ref_losses, rtol=1e-5)


def test_step_is_compiled_and_conditional_flows_take_context():
    keras.utils.set_random_seed(1)
    flow = M.NSF(2, num_layers=2, hidden_units=(16,), bins=4, context_dim=3)
    step = make_train_step(flow, keras.optimizers.Adam(1e-2))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 2)).astype("float32")
    c = rng.normal(size=(128, 3)).astype("float32")
    first = float(step(x, c))
    for _ in range(20):
        last = float(step(x, c))
    assert last < first
    assert step.function_spec.jit_compile is True
