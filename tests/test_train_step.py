"""make_train_step: the compiled one-step training function used by hand-written loops."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasflows import datasets
from kerasflows import models as M
import kerasflows
import kerasflows.training
from kerasflows.layers import (ActNorm, AffineCoupling, BatchNorm, InvertibleLinear,
                               MaskedAutoregressive)
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


def test_fit_updates_a_plain_adam_with_the_fused_kernel_as_keras_would(fused_adam_ops):
    """`Flow.fit` updates a plain Adam through TF's fused kernel (`Flow.fused_adam`):
    the losses, weights and optimizer state of Keras' own update; any other
    optimizer, and `fused_adam = False`, keep Keras' update."""
    x = datasets.load("moons", n=4 * 128, seed=0)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, len(x)).astype("float32")
    runs = {}
    for fused in (True, False):
        flow = _flow("MAF")
        flow.fused_adam = fused
        # a plain graph step: the fused kernel is the same op in it (compiled with XLA
        # by make_train_step: test_adam_built_for_the_weights_keeps_per_weight_slots)
        flow.compile(optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(1e-2, 8)), jit_compile=False)
        history = flow.fit(x, sample_weight=weights, batch_size=128, epochs=2,
                           shuffle=False, verbose=0)
        runs[fused] = (history.history["loss"], flow.get_weights(),
                       [v.numpy() for v in flow.optimizer.variables])
        assert bool(fused_adam_ops) == fused and int(flow.optimizer.iterations.numpy()) == 8
        fused_adam_ops.clear()
    (loss, w, state), (loss_k, w_k, state_k) = runs[True], runs[False]
    np.testing.assert_allclose(loss, loss_k, rtol=1e-5)
    assert loss[-1] < loss[0]
    for a, b in zip(w + state, w_k + state_k):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    clipped = _flow("MAF")
    clipped.compile(optimizer=keras.optimizers.Adam(1e-2, clipnorm=1.0), jit_compile=False)
    clipped.fit(x, batch_size=128, epochs=1, verbose=0)
    assert not fused_adam_ops


def test_unbuilt_adam_is_packed_and_its_moments_are_keras_adams():
    x = datasets.load("moons", n=3 * 128, seed=0)
    batches = np.split(x, 3)
    ref, ref_opt = _flow("MAF"), keras.optimizers.Adam(1e-2)
    _keras_adam_losses(ref, batches, ref_opt)
    flow, opt = _flow("MAF"), keras.optimizers.Adam(1e-2)
    step = make_train_step(flow, opt)
    for xb in batches:
        step(xb)
    n = sum(int(np.prod(v.shape)) for v in flow.trainable_variables)
    assert [tuple(m.shape) for m in opt._momentums + opt._velocities] == [(n,), (n,)]
    flat = lambda slots: np.concatenate([s.numpy().ravel() for s in slots])
    np.testing.assert_allclose(opt._momentums[0].numpy(), flat(ref_opt._momentums),
                               rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(opt._velocities[0].numpy(), flat(ref_opt._velocities),
                               rtol=1e-3, atol=1e-8)
    # a second step for the same flow continues the same state
    again = make_train_step(flow, opt)
    again(batches[0])
    assert int(opt.iterations.numpy()) == 4 and len(opt._momentums) == 1
    # another flow cannot share it: the error names both sizes; nor can a flow of the
    # same size (its first step took the other flow's moments and step count)
    other = M.MAF(2, num_layers=1, hidden_units=(8,))
    m = sum(int(np.prod(v.shape)) for v in other.trainable_variables)
    with pytest.raises(ValueError, match=rf"packed layout of another flow's {n} weights "
                                         rf"\(this flow has {m}\)"):
        make_train_step(other, opt)
    twin = _flow("MAF")
    assert [v.shape for v in twin.trainable_variables] == [
        v.shape for v in flow.trainable_variables]
    with pytest.raises(ValueError, match=rf"another flow's {n} weights \(this flow has {n}\)"):
        make_train_step(twin, opt)
    opt.clipnorm = 1.0                                  # its own flow's, changed since
    with pytest.raises(ValueError, match=r"this flow's packed layout and is no longer a plain"):
        make_train_step(flow, opt)
    opt.clipnorm = None
    # and an Adam built per weight for one flow is not another's (Keras' own update
    # refuses unknown weights; the fused one took the first flow's moments)
    fitted = _flow("MAF")
    fitted.compile(keras.optimizers.Adam(1e-2), jit_compile=False)
    fitted.fit(x, batch_size=128, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"built for other weights \(another flow's: it does "
                                         r"not know '.*kernel.*'\)"):
        make_train_step(twin, fitted.optimizer)
    # nor can Keras' compile (saving dropped its state) and fit (it failed with
    # Keras' "Unknown variable"), whichever comes first
    with pytest.raises(ValueError, match="Flow.compile: this optimizer was built by "
                                         "make_train_step on its packed layout"):
        flow.compile(optimizer=opt)
    compiled = M.MAF(2, num_layers=1, hidden_units=(8,))
    compiled.compile(optimizer=keras.optimizers.Adam(1e-3))
    make_train_step(compiled, compiled.optimizer)(batches[0])
    with pytest.raises(ValueError, match="Flow.fit: this flow's optimizer was built by "
                                         "make_train_step on its packed layout"):
        compiled.fit(batches[0], verbose=0)


def test_adam_built_for_the_weights_keeps_per_weight_slots():
    x = datasets.load("moons", n=3 * 128, seed=0)
    batches = np.split(x, 3)
    ref = _flow("RealNVP")
    ref_losses = _keras_adam_losses(ref, batches, keras.optimizers.Adam(1e-2))
    flow, opt = _flow("RealNVP"), keras.optimizers.Adam(1e-2)
    opt.build(flow.trainable_variables)
    step = make_train_step(flow, opt)
    np.testing.assert_allclose([float(step(xb)) for xb in batches], ref_losses,
                               rtol=1e-4, atol=1e-5)
    assert len(opt._momentums) == len(flow.trainable_variables)


@keras.saving.register_keras_serializable(package="kerasflows_tests")
class _ShiftWithUnusedWeight(kerasflows.layers.FlowLayer):
    def build_flow(self, event_dim):
        self.shift = self.add_weight(shape=(event_dim,), initializer="zeros")
        self.unused = self.add_weight(shape=(3,), initializer="ones")

    def bijector(self, context=None):
        import tensorflow_probability as tfp
        return tfp.bijectors.Shift(self.shift)


@pytest.mark.parametrize("prebuilt", [False, True])
def test_weights_the_loss_does_not_reach_stay_put(prebuilt):
    keras.utils.set_random_seed(0)
    flow = kerasflows.Flow([_ShiftWithUnusedWeight(), MaskedAutoregressive(hidden_units=(8,))],
                           event_dim=2)
    opt = keras.optimizers.Adam(1e-2)
    if prebuilt:
        opt.build(flow.trainable_variables)
    step = make_train_step(flow, opt)
    # moments left from earlier training (a zero gradient would make them decay
    # and move the weight; Keras' Adam skips the weight, and so must the step)
    for slot in opt._momentums + opt._velocities:
        slot.assign(np.full(slot.shape, 0.5, "float32"))
    for xb in _batches(3):
        step(xb)
    layer = flow.flow_layers[0]
    np.testing.assert_array_equal(layer.unused.numpy(), np.ones(3))
    assert np.all(layer.shift.numpy() != 0)
    if prebuilt:
        i = [v.path for v in flow.trainable_variables].index(layer.unused.path)
        kept = opt._momentums[i].numpy()
    else:
        sizes = [int(np.prod(v.shape)) for v in flow.trainable_variables]
        i = [v.path for v in flow.trainable_variables].index(layer.unused.path)
        kept = opt._momentums[0].numpy()[sum(sizes[:i]):sum(sizes[:i + 1])]
    np.testing.assert_array_equal(kept, np.full(3, 0.5))


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
    # the compiled tier ran through the flat call (the state's handles bound once)
    assert list(tier["calls"]) == ["xla"] and tier["calls"]["xla"].flat


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
    tier = step._tiers[step._signature(tf.constant(x), tf.constant(c))]
    assert tier["calls"]["xla"].flat            # with a context too


@pytest.mark.parametrize("shards", [1, 2])
def test_background_compile_with_a_fixed_switch_is_reproducible(shards):
    """`background_compile=N`: exactly N graph steps, then the compiled step (waiting
    for it), so two runs of one seed agree bit for bit. With the switch left to
    timing, the first run (cold XLA) and the second (its compilation cached) ran
    different steps as graphs and drifted apart in float rounding."""
    batches = _batches(12, seed=4)
    runs = []
    for _ in range(2):
        flow = _flow("MAF")
        step = make_train_step(flow, keras.optimizers.Adam(1e-2), background_compile=5,
                               shards=shards)
        assert isinstance(step, BackgroundCompiledStep) and step.graph_steps == 5
        losses = []
        for i, xb in enumerate(batches):
            losses.append(float(step(xb)))
            (tier,) = step._tiers.values()
            if i == 0:
                # XLA done before the switch (as with slow steps, e.g. splines on
                # digits): calls 2-5 must still run as a graph, not switch early
                assert step.wait(120)
            assert tier["graph_calls"] == min(i + 1, 5)
            assert ("xla" in tier["calls"]) == (i >= 5)
            # compiled: the next call runs the compiled step (not just: it is ready)
            assert step.compiled is (i >= 4)
            if i >= 5:                   # call 6 waited for the compiled step and ran it
                assert tier["xla"] is not None and "xla" in tier["calls"]
        assert step.compiled and list(tier["calls"]) == ["graph", "xla"]
        runs.append((losses, [v.numpy() for v in flow.trainable_variables]))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)
    assert runs[0][0][-1] < runs[0][0][0]
    for bad in (0, -3, 2.5, "5"):
        with pytest.raises(ValueError, match=r"`background_compile` must be an integer >= 1"):
            make_train_step(_flow(), keras.optimizers.Adam(1e-2), background_compile=bad)


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


def test_an_interrupted_first_call_still_compiles_in_the_background(monkeypatch):
    """A first call of a batch shape that raised (Ctrl-C) left a tier whose
    compilation never started: the step ran as a graph for good."""
    flow = _flow()
    step = make_train_step(flow, keras.optimizers.Adam(1e-2), background_compile=True)
    batches = _batches(4, seed=3)
    concrete = step._step.get_concrete_function(tf.constant(batches[0]), None, *step.state)
    calls = []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(type(concrete), "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        step(batches[0])
    monkeypatch.undo()
    assert calls and not step._tiers
    for xb in batches:
        assert np.isfinite(float(step(xb)))
    assert step.wait(120) and step.compiled


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


def test_background_compile_is_ignored_for_a_dropout_in_the_context_encoder():
    """The stand-in compile run advanced the encoder's real Dropout seed at whatever
    step the compilation finished, so `background_compile=N` runs of one seed
    differed: only the flow's own `sample_seed` is state training leaves alone."""
    keras.utils.set_random_seed(0)
    encoder = keras.Sequential([keras.layers.Dense(4), keras.layers.Dropout(0.5)])
    flow = M.MAF(2, num_layers=2, hidden_units=(8,), context_dim=1, context_encoder=encoder)
    seed = encoder.layers[1].seed_generator.state
    state = kerasflows.sharded_step.training_state(flow)
    assert [id(v) for v in state] == [id(seed)]
    step = make_train_step(flow, keras.optimizers.Adam(1e-2), background_compile=2)
    assert not isinstance(step, BackgroundCompiledStep)
    assert step.function_spec.jit_compile is True
    start = seed.numpy().copy()
    x, c = _batches(1)[0], np.ones((128, 1), "float32")
    for _ in range(4):
        assert np.isfinite(float(step(x, c)))
    np.testing.assert_array_equal(seed.numpy() - start, [0, 4])    # one draw a step
    # a sharded step writes each part's draw after it (`loss_and_grads_at`): allowed
    step = make_train_step(flow, keras.optimizers.Adam(1e-2), shards=2, background_compile=2)
    assert not isinstance(step, BackgroundCompiledStep)
    assert np.isfinite(float(step(x, c)))
    assert not kerasflows.sharded_step.training_state(_flow())


# -- shards: the batch split into parts computed side by side ---------------------------------
def test_shard_rows_splits_as_evenly_as_possible():
    assert kerasflows.training.shard_rows(512, 2) == (256, 256)
    assert kerasflows.training.shard_rows(7, 2) == (4, 3)
    assert kerasflows.training.shard_rows(10, 4) == (3, 3, 2, 2)
    assert kerasflows.training.shard_rows(3, 4) == (1, 1, 1)        # never an empty part
    assert kerasflows.training.shard_rows(5, 1) == (5,)


@pytest.mark.parametrize("recipe,kwargs,rows,background", [
    ("RealNVP", {}, 128, False), ("MAF", {}, 128, True), ("NSF", {"bins": 4}, 128, True),
    ("MAF", {}, 129, False)],                   # parts of 65 and 64 rows, weighted by rows
    ids=["realnvp", "maf-background", "nsf-background", "maf-uneven"])
def test_sharded_step_trains_like_the_whole_step(recipe, kwargs, rows, background):
    batches = _batches(6, rows=rows, seed=4)
    ref, ref_opt = _flow(recipe, **kwargs), keras.optimizers.Adam(1e-2)
    ref_step = make_train_step(ref, ref_opt)
    ref_losses = [float(ref_step(xb)) for xb in batches]
    flow, opt = _flow(recipe, **kwargs), keras.optimizers.Adam(1e-2)
    step = make_train_step(flow, opt, shards=2, background_compile=background)
    losses = [float(step(batches[0]))]
    if background:
        assert isinstance(step, BackgroundCompiledStep)
        assert step.wait(120) and step.compiled and step.error is None
        (tier,) = step._tiers.values()
        assert tier["xla_function"] is step._sharded      # the compiled tier is the sharded step
        assert step._sharded.experimental_get_tracing_count() == 1   # stand-ins' trace reused
    losses += [float(step(xb)) for xb in batches[1:]]
    if background:
        assert list(tier["calls"]) == ["xla"] and tier["calls"]["xla"].flat
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4, atol=1e-5)
    for a, b in zip(flow.trainable_variables, ref.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-5)
    for a, b in zip(opt._momentums + opt._velocities, ref_opt._momentums + ref_opt._velocities):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-6)
    assert int(opt.iterations.numpy()) == 6


def _calls(graph):
    """The function-call ops of `graph`, with the functions they call."""
    return [(op, op.get_attr("f").name) for op in graph.get_operations()
            if op.type in ("StatefulPartitionedCall", "PartitionedCall")]


def _ancestors(op):
    seen, todo = set(), [op]
    while todo:
        o = todo.pop()
        for parent in [t.op for t in o.inputs] + list(o.control_inputs):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def test_sharded_step_runs_its_parts_side_by_side():
    flow, opt = _flow("MAF"), keras.optimizers.Adam(1e-2)
    step = make_train_step(flow, opt, shards=2)
    graph = step.get_concrete_function(tf.TensorSpec([128, 2], tf.float32)).graph
    calls = _calls(graph)
    names = [name for _, name in calls]
    (part,) = [n for n in set(names) if names.count(n) == 2]
    parts = [op for op, name in calls if name == part]
    (update,) = [op for op, name in calls if name != part]
    # neither part waits for the other (the executor may run them at once); the update
    # waits for both
    assert parts[1] not in _ancestors(parts[0]) and parts[0] not in _ancestors(parts[1])
    assert set(parts) <= _ancestors(update)
    # the parts and the update are compiled; the step around them is not
    for op in parts + [update]:
        assert op.get_attr("_XlaMustCompile")
    assert not step.function_spec.jit_compile
    # with the packed Adam, each part hands over one gradient vector, not one per weight
    n = sum(int(np.prod(v.shape)) for v in flow.trainable_variables)
    assert [tuple(t.shape) for t in parts[0].outputs] == [(), (n,)]
    # and no compiled call takes a weight variable: the parts take the weights' values
    # (read once by the step); the update takes the optimizer's variables (count,
    # learning rate, the two moment vectors) and hands back the new weights as one
    # vector, which the step writes
    for op in parts:
        assert not any(t.dtype == tf.resource for t in op.inputs)
    assert len([t for t in update.inputs if t.dtype == tf.resource]) == len(opt.variables) == 4
    assert [tuple(t.shape) for t in update.outputs] == [(), (n,)]
    writes = [op for op in graph.get_operations() if op.type == "AssignVariableOp"]
    assert len(writes) == len(flow.trainable_variables)


def test_sharded_step_with_context_unreached_weights_and_other_optimizers():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(0)
    x, c = (rng.normal(size=(128, d)).astype("float32") for d in (2, 3))
    losses = {}
    for shards in (1, 2):
        keras.utils.set_random_seed(1)
        flow = M.MAF(2, num_layers=2, hidden_units=(16,), context_dim=3)
        step = make_train_step(flow, keras.optimizers.Adam(1e-2), shards=shards)
        losses[shards] = [float(step(x, c)) for _ in range(5)]
    np.testing.assert_allclose(losses[2], losses[1], rtol=1e-4, atol=1e-5)
    assert losses[2][-1] < losses[2][0]
    # one context row shared by the whole batch, as the flow takes it (splitting it
    # into the parts' rows failed), in the background-compiled step too
    shared = {}
    for shards, background in ((1, False), (2, False), (2, True)):
        keras.utils.set_random_seed(1)
        flow = M.MAF(2, num_layers=2, hidden_units=(16,), context_dim=3)
        step = make_train_step(flow, keras.optimizers.Adam(1e-2), shards=shards,
                               background_compile=background)
        shared[shards, background] = [float(step(x, c[:1])) for _ in range(3)]
        if background:
            assert step.wait(120) and step.compiled, step.error
    for key in ((2, False), (2, True)):
        np.testing.assert_allclose(shared[key], shared[1, False], rtol=1e-4, atol=1e-5)
    # a context of neither 1 nor the batch's rows is refused by name (the split of the
    # sharded step failed inside TensorFlow)
    for shards in (1, 2):
        step = make_train_step(flow, keras.optimizers.Adam(1e-2), shards=shards)
        with pytest.raises(ValueError, match=r"context has 3 rows .*128|128 rows .*context "
                                             r"has 3"):
            step(x, c[:3])

    # a weight the loss does not reach stays put, and so do its packed moments
    keras.utils.set_random_seed(0)
    flow = kerasflows.Flow([_ShiftWithUnusedWeight(), MaskedAutoregressive(hidden_units=(8,))],
                           event_dim=2)
    opt = keras.optimizers.Adam(1e-2)
    step = make_train_step(flow, opt, shards=2)
    opt._momentums[0].assign(np.full(opt._momentums[0].shape, 0.5, "float32"))
    for xb in _batches(3):
        step(xb)
    layer = flow.flow_layers[0]
    np.testing.assert_array_equal(layer.unused.numpy(), np.ones(3))
    assert np.all(layer.shift.numpy() != 0)
    sizes = [int(np.prod(v.shape)) for v in flow.trainable_variables]
    i = [v.path for v in flow.trainable_variables].index(layer.unused.path)
    np.testing.assert_array_equal(opt._momentums[0].numpy()[sum(sizes[:i]):sum(sizes[:i + 1])],
                                  np.full(3, 0.5))

    # an optimizer's own update gets the parts' gradients combined
    x = datasets.load("eight_gaussians", n=256, seed=0)
    ref = _flow()
    ref_losses = _keras_adam_losses(ref, [x, x], keras.optimizers.SGD(0.05, momentum=0.9))
    flow = _flow()
    step = make_train_step(flow, keras.optimizers.SGD(0.05, momentum=0.9), shards=2)
    np.testing.assert_allclose([float(step(x)), float(step(x))], ref_losses, rtol=1e-5)
    for a, b in zip(flow.trainable_variables, ref.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)


def test_shards_reject_bad_values_layer_state_and_strategies():
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match=f"`shards` must be an integer >= 1.*{bad!r}"):
            make_train_step(_flow(), keras.optimizers.Adam(1e-2), shards=bad)
    flow = kerasflows.Flow([BatchNorm(), MaskedAutoregressive(hidden_units=(8,))], event_dim=2)
    flow.log_prob(np.zeros((2, 2), "float32"))
    with pytest.raises(ValueError, match="shards=2: this flow updates state while it trains"):
        make_train_step(flow, keras.optimizers.Adam(1e-2), shards=2)
    # under a strategy, with any shards, the step used to fail inside TensorFlow
    # ("'NoneType' object has no attribute 'merge_call'")
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        flow = _flow()
        for shards in (1, 2):
            with pytest.raises(ValueError, match="one-device step, not one for a "
                                                 "tf.distribute strategy"):
                make_train_step(flow, keras.optimizers.Adam(1e-2), shards=shards)
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        flow = _flow()
    with pytest.raises(ValueError, match="this flow's weights are distributed"):
        make_train_step(flow, keras.optimizers.Adam(1e-2))      # made in the scope
    # a batch of unknown size cannot be split
    step = make_train_step(_flow(), keras.optimizers.Adam(1e-2), shards=2)
    with pytest.raises(ValueError, match="needs batches of a static size"):
        step.get_concrete_function(tf.TensorSpec([None, 2], tf.float32))


def test_glow_flows_shard_and_compile_in_the_background():
    """ActNorm's `initialized` flag and the LU layer's permutation and signs are
    non-trainable weights no training call writes: not state that would bar sharding."""
    def glow():
        keras.utils.set_random_seed(0)
        return kerasflows.Flow([AffineCoupling(hidden_units=(16,)), ActNorm(),
                                InvertibleLinear(seed=1), AffineCoupling(hidden_units=(16,))],
                               event_dim=2)
    x = datasets.load("eight_gaussians", n=512, seed=0)
    batches = np.split(x, 4)
    flows = [glow(), glow()]
    for flow in flows:
        flow.initialize(batches[0])
    ref = make_train_step(flows[0], keras.optimizers.Adam(1e-2))
    step = make_train_step(flows[1], keras.optimizers.Adam(1e-2), shards=2,
                           background_compile=True)
    assert isinstance(step, BackgroundCompiledStep)
    losses = [float(step(batches[0]))]
    assert step.wait(120) and step.compiled
    losses += [float(step(b)) for b in batches[1:]]
    np.testing.assert_allclose(losses, [float(ref(b)) for b in batches], rtol=1e-4, atol=1e-5)
    # Adam's first steps move weights with near-zero gradients by about lr * sign(g),
    # float rounding included
    for a, b in zip(flows[0].weights, flows[1].weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=3e-4)


@keras.saving.register_keras_serializable(package="test_train_step")
class _MeanShift(kerasflows.layers.FlowLayer):
    """A user's data-initialised layer: a shift set to the data mean, which tracks
    whether it is set under a name of its own (not ActNorm's `initialized`)."""
    needs_data_init = True

    def build_flow(self, event_dim):
        self.shift = self.add_weight(shape=(event_dim,), initializer="zeros", name="shift")
        self.done = self.add_weight(shape=(), dtype="bool", initializer="zeros",
                                    trainable=False, name="done")

    def data_init(self, x, context=None):
        if not bool(self.done.numpy()):
            self.shift.assign(tf.reduce_mean(tf.cast(x, self.shift.dtype), 0))
            self.done.assign(True)

    def bijector(self, context=None):
        import tensorflow_probability as tfp
        return tfp.bijectors.Shift(tf.convert_to_tensor(self.shift))


class _TrackedMeanShift(_MeanShift):
    def is_data_initialized(self):
        return bool(self.done.numpy())


def test_a_custom_data_initialised_layer_trains_in_a_step_once_initialised():
    """A user layer with `needs_data_init` and no `initialized` weight was refused
    even after `flow.initialize(x)`; one that answers `is_data_initialized` is
    refused before, with a message in plain words, and trains after."""
    x = datasets.load("eight_gaussians", n=256, seed=0) + 5
    flow = kerasflows.Flow([AffineCoupling(hidden_units=(8,)), _MeanShift()], 2)
    flow.initialize(x)
    step = make_train_step(flow, keras.optimizers.Adam(1e-3))
    assert np.isfinite(float(step(x)))
    flow = kerasflows.Flow([AffineCoupling(hidden_units=(8,)),
                            _TrackedMeanShift(name="mean_shift")], 2)
    with pytest.raises(ValueError, match=r"layer 'mean_shift' must initialise from data "
                       r"before training and has not been initialised yet: call "
                       r"flow.initialize\(x\)"):
        make_train_step(flow, keras.optimizers.Adam(1e-3))
    flow.initialize(x)
    step = make_train_step(flow, keras.optimizers.Adam(1e-3))
    assert np.isfinite(float(step(x)))


def test_make_train_step_refuses_what_is_not_a_flow_or_an_optimizer():
    # a string optimizer or a None flow failed with AttributeErrors deep inside
    flow = _flow()
    with pytest.raises(TypeError, match=r"`optimizer` must be a keras.optimizers.Optimizer.*"
                                        r"keras.optimizers.Adam\(1e-3\).*Received: optimizer='adam'"):
        make_train_step(flow, "adam")
    with pytest.raises(TypeError, match=r"`flow` must be a kerasflows.Flow.*Received: flow=None"):
        make_train_step(None, keras.optimizers.Adam(1e-3))


@pytest.mark.parametrize("kwargs", [{}, {"jit_compile": False}, {"shards": 2},
                                    {"background_compile": 1}])
def test_a_batch_of_no_rows_is_refused_before_any_update(kwargs):
    """The step returned a NaN loss and still counted an Adam step."""
    flow = _flow()
    optimizer = keras.optimizers.Adam(1e-3)
    step = make_train_step(flow, optimizer, **kwargs)
    x = datasets.load("moons", n=64, seed=0)
    step(x)
    before = [v.numpy() for v in flow.trainable_variables]
    count = int(optimizer.iterations.numpy())
    with pytest.raises(ValueError, match=r"batch with no rows \(shape \(0, 2\)\)"):
        step(np.zeros((0, 2), "float32"))
    assert int(optimizer.iterations.numpy()) == count
    for b, v in zip(before, flow.trainable_variables):
        np.testing.assert_array_equal(b, v.numpy())
    assert np.isfinite(float(step(x)))


@pytest.mark.parametrize("kwargs", [{}, {"jit_compile": False}, {"shards": 2},
                                    {"background_compile": 1}])
def test_the_step_takes_lists_and_integers_as_log_prob_does(kwargs):
    """A list raised AttributeError: 'list' object has no attribute 'shape'."""
    x = np.random.default_rng(0).standard_normal((6, 2))
    steps = []
    for given in (x.astype("float32"), x.tolist()):
        flow = _flow("MAF")
        step = make_train_step(flow, keras.optimizers.Adam(1e-3), **kwargs)
        steps.append([float(step(given)) for _ in range(2)])
    assert steps[0] == steps[1]
    c = np.arange(6)[:, None]                                   # integer labels
    flow = _flow("MAF", context_dim=1)
    step = make_train_step(flow, keras.optimizers.Adam(1e-3), **kwargs)
    assert np.isfinite(float(step(x.tolist(), c.tolist())))
    assert np.isfinite(float(step(x, c)))


@pytest.mark.parametrize("kwargs", [{}, {"shards": 2}, {"background_compile": 1}])
def test_the_step_names_the_shapes_it_was_given_not_a_parts(kwargs):
    """With shards=2 a context of shape (5,) was reported as 'received shape (3,)'."""
    x = np.random.default_rng(0).standard_normal((5, 2)).astype("float32")
    flow = _flow("MAF", context_dim=1)
    step = make_train_step(flow, keras.optimizers.Adam(1e-3), **kwargs)
    for c, says in ((np.ones(5, "float32"), r"context of shape \(batch, 1\); received shape "
                                            r"\(5,\)"),
                    (np.ones((5, 2), "float32"), r"context of shape \(batch, 1\); received "
                                                 r"shape \(5, 2\)"),
                    (np.ones((3, 1), "float32"), r"5 rows \(shape \(5, 2\)\) but the context "
                                                 r"has 3")):
        with pytest.raises(ValueError, match=says):
            step(x, c)
    with pytest.raises(ValueError, match=r"inputs of shape \(batch, 2\); received shape "
                                         r"\(5, 3\)"):
        step(np.ones((5, 3), "float32"), np.ones((5, 1), "float32"))
    with pytest.raises(ValueError, match=r"conditional \(context_dim=1\)"):
        step(x)
    assert np.isfinite(float(step(x, np.ones((1, 1), "float32"))))     # one shared row
