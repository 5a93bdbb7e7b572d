"""make_train_step: the compiled one-step training function used by hand-written loops."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasflows import datasets
from kerasflows import models as M
import kerasflows
import kerasflows.training
from kerasflows.layers import BatchNorm, MaskedAutoregressive
from kerasflows.training import BackgroundCompiledStep, make_train_step


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


def _batches(n, rows=128, dim=2, seed=0):
    return list(np.random.default_rng(seed).normal(size=(n, rows, dim)).astype("float32"))


@pytest.mark.parametrize("recipe,kwargs", [("MAF", {}), ("NSF", {"bins": 4})])
def test_background_compiled_step_trains_like_the_compiled_step(recipe, kwargs):
    batches = _batches(6)
    ref, ref_opt = _flow(recipe, **kwargs), keras.optimizers.Adam(1e-2)
    ref_step = make_train_step(ref, ref_opt)
    ref_losses = [float(ref_step(xb)) for xb in batches]
    flow, opt = _flow(recipe, **kwargs), keras.optimizers.Adam(1e-2)
    step = make_train_step(flow, opt, background_compile=True)
    assert isinstance(step, BackgroundCompiledStep)
    losses = [float(step(batches[0]))]            # traced and run as a graph
    assert step.wait(120) and step.compiled and step.error is None
    losses += [float(step(xb)) for xb in batches[1:]]   # the XLA-compiled step
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4, atol=1e-5)
    for a, b in zip(flow.trainable_variables, ref.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-5)
    for a, b in zip(opt._momentums + opt._velocities, ref_opt._momentums + ref_opt._velocities):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-6)
    assert int(opt.iterations.numpy()) == 6        # the stand-ins' update was thrown away
    # one trace per batch signature: the compiled function reuses the graph's trace, and
    # the real variables reuse the function the stand-ins compiled (the same specs)
    assert step._step.experimental_get_tracing_count() == 1
    (tier,) = step._tiers.values()
    assert tier["xla_function"].experimental_get_tracing_count() == 1


def test_background_compiled_step_takes_context_and_new_batch_shapes():
    keras.utils.set_random_seed(1)
    flow = M.NSF(2, num_layers=2, hidden_units=(16,), bins=4, context_dim=3)
    step = make_train_step(flow, keras.optimizers.Adam(1e-2), background_compile=True)
    rng = np.random.default_rng(0)
    x, c = (rng.normal(size=(128, d)).astype("float32") for d in (2, 3))
    first = float(step(x, c))
    assert step.wait(120) and step.compiled
    float(step(x[:64], c[:64]))                    # a new signature: a graph again, then XLA
    assert len(step._tiers) == 2
    assert step.wait(120) and step.compiled
    for _ in range(20):
        last = float(step(x, c))
    assert last < first


def test_background_compile_failure_leaves_the_graph_step_training(monkeypatch):
    flow = _flow()
    step = make_train_step(flow, keras.optimizers.Adam(1e-2), background_compile=True)

    def no_xla(*args, **kwargs):
        raise RuntimeError("no XLA here")
    monkeypatch.setattr(kerasflows.training.tf, "function", no_xla)
    batches = _batches(8, seed=2)
    first = float(step(batches[0]))
    assert not step.wait(120) and isinstance(step.error, RuntimeError)
    assert not step.compiled
    monkeypatch.undo()
    for xb in batches[1:]:
        last = float(step(xb))
    assert np.isfinite(last) and last < first


def test_background_compile_needs_plain_adam_xla_and_no_layer_state():
    for opt, jit in ((keras.optimizers.SGD(0.05), True), (keras.optimizers.Adam(1e-2), False)):
        step = make_train_step(_flow(), opt, jit_compile=jit, background_compile=True)
        assert not isinstance(step, BackgroundCompiledStep)
        assert step.function_spec.jit_compile is jit
    # BatchNorm's moving statistics would be updated by the stand-in compile run too
    flow = kerasflows.Flow([BatchNorm(), MaskedAutoregressive(hidden_units=(8,))], event_dim=2)
    step = make_train_step(flow, keras.optimizers.Adam(1e-2), background_compile=True)
    assert not isinstance(step, BackgroundCompiledStep)
    assert step.function_spec.jit_compile is True
