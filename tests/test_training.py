"""Training with compile()/fit(): learning, XLA, callbacks, distribution, bad data.

Tests of what fit does with its data compile a plain graph step
(`jit_compile=False`): the data are checked and fed before the step, and each
XLA compilation costs seconds. The default, XLA, is trained in
test_fit_reaches_the_true_entropy_on_moons and test_auto_jit_compile_is_xla_on_cpu_too.
"""

import gc
import json
import os
import re
import subprocess
import sys
import warnings
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasflows
from kerasflows import datasets
from kerasflows import layers as L
from kerasflows import models as M
from kerasflows import training


@pytest.fixture(autouse=True)
def _pydataset_iterators_released_young(request, monkeypatch):
    """Collects the garbage of a test that fed a flow a PyDataset, as it ends. A fit
    that raises mid-epoch leaves Keras' tf.data iterator of the PyDataset in the
    exception's reference cycle; destroyed a minute or more later, by the garbage
    collector in another test, it blocked the process for up to a minute with no
    thread running (the wait of tf.data's autotuning thread, which grows with the
    iterator's age: 51 s at 90 s old, none at 30 s, in a script that only kept the
    exception; fed by a tf.data stream or a generator, none at 90 s). Only when one
    of the test's iterators is still alive: a full collection costs 0.3-0.6 CPU-s
    (more late in a worker's run), and 7 of the 12 PyDataset tests leave none."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    if params.get("kind") != "pydataset":
        yield
        return
    from tensorflow.python.data.ops import iterator_ops
    made, init = [], iterator_ops.OwnedIterator.__init__

    def tracked(self, *args, **kwargs):
        made.append(weakref.ref(self))
        init(self, *args, **kwargs)
    monkeypatch.setattr(iterator_ops.OwnedIterator, "__init__", tracked)
    yield
    if any(ref() is not None for ref in made):
        gc.collect()


@pytest.fixture(scope="module")
def moons():
    # 60 batches of 512 (a short last batch would be padded, with weights of 1 for
    # every row: test_short_last_batch_runs_padded_on_the_full_batches_executable)
    train = datasets.load("moons", n=30_720, seed=0)
    test = datasets.load("moons", n=5_000, seed=1)
    entropy = -datasets.true_log_prob("moons", test).mean()
    return train, test, entropy


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["NSF", "MAF"])
def test_fit_reaches_the_true_entropy_on_moons(recipe, moons):
    train, test, entropy = moons
    keras.utils.set_random_seed(0)
    flow = getattr(M, recipe)(2, num_layers=5, hidden_units=(64, 64))
    steps, bound = {"NSF": (300, 0.06), "MAF": (500, 0.12)}[recipe]
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, decay_steps=steps, alpha=0.05)
    flow.compile(optimizer=keras.optimizers.Adam(schedule), jit_compile=True)
    # whole epochs of at least `steps` steps (NSF: 5 of 60, not a 6th at the floor rate)
    flow.fit(train, batch_size=512, epochs=-(-steps * 512 // len(train)), verbose=0)
    nll = -float(np.mean(flow.log_prob(test)))
    print(f"{recipe}: test NLL {nll:.4f}, true entropy {entropy:.4f}, gap {nll - entropy:.4f}")
    assert nll - entropy < bound      # seed 0 here: NSF 0.027, MAF 0.074


def test_reported_loss_is_mean_nll_in_nats():
    flow = M.RealNVP(2, num_layers=2, hidden_units=(8,))
    x = datasets.load("eight_gaussians", n=1000)
    # no update: the loss is the NLL of fixed weights
    flow.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=False)
    hist = flow.fit(x, batch_size=100, epochs=1, verbose=0)
    np.testing.assert_allclose(hist.history["loss"][0], -np.mean(flow.log_prob(x)), rtol=1e-5)
    np.testing.assert_allclose(flow.evaluate(x, verbose=0), -np.mean(flow.log_prob(x)), rtol=1e-5)


def test_jit_compiled_training_and_compiled_evaluation():
    flow = M.RealNVP(2, num_layers=2, hidden_units=(16,))  # NSF/MAF: test_fit_reaches_...
    x = datasets.load("moons", n=2048)
    flow.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    hist = flow.fit(x, batch_size=256, epochs=3, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    graph_lp, graph_x = flow.log_prob(x[:64]), flow.sample(32, seed=1)
    flow.eval_mode = "xla"
    np.testing.assert_allclose(flow.log_prob(x[:64]), graph_lp, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(flow.sample(32, seed=1), graph_x, atol=1e-4)
    assert all(f.function_spec.jit_compile for (_, mode, *_), f in flow._compiled.items()
               if mode == "xla")
    lp = tf.function(flow.log_prob, jit_compile=True)(tf.constant(x[:64]))  # inside user XLA
    np.testing.assert_allclose(lp, graph_lp, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="eval_mode"):
        flow.eval_mode = "fast"


def test_stock_callbacks_work(tmp_path):
    flow = M.RealNVP(2, num_layers=2, hidden_units=(8,))
    x = datasets.load("moons", n=1024)
    flow.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    ckpt = str(tmp_path / "best.keras")
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(ckpt, monitor="val_loss", save_best_only=True),
        keras.callbacks.BackupAndRestore(str(tmp_path / "backup")),
        keras.callbacks.TensorBoard(str(tmp_path / "tb")),
        keras.callbacks.TerminateOnNaN(),
    ]
    flow.fit(x, batch_size=128, epochs=3, validation_data=x[:256], callbacks=callbacks, verbose=0)
    best = keras.models.load_model(ckpt)
    assert np.all(np.isfinite(best.log_prob(x[:10])))
    assert os.listdir(tmp_path / "tb")


def _twin_fits(make, data, flat, jit_compile=True, **fit_kwargs):
    """Trains a fresh flow from `make()` (seed 0) with flat step calls on or off."""
    keras.utils.set_random_seed(0)
    flow = make()
    flow.flat_step_calls = flat
    flow.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=jit_compile)
    hist = flow.fit(data, shuffle=False, verbose=0, **fit_kwargs)
    return flow, hist.history


def test_flat_step_calls_train_and_evaluate_as_keras_loop():
    x = datasets.load("moons", n=1050)           # batches of 100: the last one has 50 rows
    w = np.linspace(0.5, 1.5, len(x)).astype("float32")
    make = lambda: M.MAF(2, num_layers=2, hidden_units=(16,))
    kw = dict(batch_size=100, epochs=2, validation_data=x[:300], sample_weight=w)
    # plain graph steps: an XLA compilation per batch size and kind of call cost 5 s
    # here (the XLA-compiled flat calls against Keras' loop:
    # test_flat_step_calls_conditional_and_where_keras_loop_is_kept)
    fast, fast_hist = _twin_fits(make, x, True, jit_compile=False, **kw)
    keras_flow, keras_hist = _twin_fits(make, x, False, jit_compile=False, **kw)
    assert isinstance(fast.train_function, training.FlatStepCalls)
    assert not isinstance(keras_flow.train_function, training.FlatStepCalls)
    # One traced graph for every batch size (100 rows, and the last batch's 50).
    assert fast.train_function.traces == 1 and fast.test_function.traces == 1
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(fast_hist[key], keras_hist[key], rtol=1e-5)
    for a, b in zip(fast.trainable_variables, keras_flow.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fast.evaluate(x, verbose=0), keras_flow.evaluate(x, verbose=0),
                               rtol=1e-5)
    # train_on_batch / test_on_batch feed plain arrays through the same functions.
    np.testing.assert_allclose(fast.test_on_batch(x[:64]), keras_flow.test_on_batch(x[:64]),
                               rtol=1e-5)
    np.testing.assert_allclose(fast.train_on_batch(x[:64]), keras_flow.train_on_batch(x[:64]),
                               rtol=1e-5)
    assert fast.train_function.traces == 2        # (x, None, None) is another kind of batch


def test_short_last_batch_runs_padded_on_the_full_batches_executable(monkeypatch):
    """Under XLA a short last batch is padded (rows repeated, weighted 0), not
    compiled for; the losses, validation losses and weights are those of the
    unpadded batches, and predict's results those of the batch's own rows."""
    x = datasets.load("moons", n=1000, seed=0)     # batches of 256: the last has 232 rows
    make = lambda: M.RealNVP(2, num_layers=2, hidden_units=(16,))
    rows = []
    plain_call = training.FlatCalls.__call__
    monkeypatch.setattr(training.FlatCalls, "__call__", lambda self, data: (
        rows.append(int(tf.nest.flatten(data)[0].shape[0])), plain_call(self, data))[1])
    kw = dict(batch_size=256, epochs=2, validation_data=x[:300])   # 256 + 44 rows
    padded, padded_hist = _twin_fits(make, x, True, **kw)
    assert set(rows) == {256} and padded.pads_short_batches()
    assert padded.train_function.padded == 2 and padded.test_function.padded == 2
    rows.clear()
    keras.utils.set_random_seed(0)
    plain = make()
    plain.pads_short_batches = lambda: False
    plain.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    plain_hist = plain.fit(x, shuffle=False, verbose=0, **kw).history
    assert set(rows) == {256, 232, 44}
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(padded_hist[key], plain_hist[key], rtol=1e-5)
    for a, b in zip(padded.trainable_variables, plain.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
    # evaluate pads too: the mean over the real rows
    rows.clear()
    nll = -padded.log_prob(x).numpy()
    np.testing.assert_allclose(padded.evaluate(x, batch_size=300, verbose=0), nll.mean(),
                               rtol=1e-5)
    assert rows == [300] * 4 and padded.test_function.padded == 3
    # and predict: each row's log-density, the short batch's cut back to its rows
    rows.clear()
    np.testing.assert_allclose(padded.predict(x, batch_size=300, verbose=0), -nll, rtol=1e-5,
                               atol=1e-5)
    assert rows == [300] * 4 and padded.predict_function.padded == 1
    rows.clear()     # a later call with smaller batches is not padded to the earlier size
    assert padded.predict(x[:100], batch_size=64, verbose=0).shape == (100,)
    assert rows == [64, 64] and padded.predict_function.padded == 2
    # arrays of fewer rows than a batch: padded to a power of two, so predict on 10,
    # 11, 12 rows does not compile for each (0.6 s each for a 2-D NSF)
    rows.clear()
    for n in (10, 11, 16, 9, 5):
        np.testing.assert_allclose(padded.predict(x[:n], verbose=0), -nll[:n], rtol=1e-5,
                                   atol=1e-5)
    assert rows == [16, 16, 16, 16, 8] and padded.predict_function.padded == 6
    assert padded.predict(x[:3], batch_size=2, verbose=0).shape == (3,)     # 2 + 1 padded
    # and evaluate, weighted 0 (the floor is this call's: fit's validation keeps its own)
    rows.clear()
    before = padded.test_function.padded
    for n in (10, 11, 16, 9):
        assert padded.evaluate(x[:n], verbose=0) == pytest.approx(nll[:n].mean(), rel=1e-5)
    assert rows == [16] * 4 and padded.test_function.padded == before + 3
    assert padded.test_function.min_rows == 0
    # a stream's unweighted batches: weighted 1 and the short last one padded (it
    # compiled the step for its 232 rows, as dequantized_dataset's last batch did)
    stream = lambda: tf.data.Dataset.from_tensor_slices(x).batch(256)
    twins = []
    for pads in (True, False):
        keras.utils.set_random_seed(0)
        twin = make()
        if not pads:
            twin.pads_short_batches = lambda: False
        twin.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
        rows.clear()
        history = twin.fit(stream(), epochs=2, validation_data=stream(), verbose=0).history
        twins.append((twin, history, sorted(set(rows))))
    (streamed, stream_hist, stream_rows), (_, unpadded_hist, unpadded_rows) = twins
    assert stream_rows == [256] and unpadded_rows == [232, 256]
    assert streamed.train_function.padded == 2 and streamed.train_function.traces == 1
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(stream_hist[key], unpadded_hist[key], rtol=1e-5)
    assert streamed.evaluate(stream(), verbose=0) == pytest.approx(
        -streamed.log_prob(x).numpy().mean(), rel=1e-5)
    # a conditional stream whose batches share one context row [1, C]: the short
    # batch's context is kept as it is (padding gathered its rows: "indices[1] = 1 is
    # not in [0, 1)")
    shared = M.MAF(2, num_layers=1, hidden_units=(8,), context_dim=1)
    shared.compile(optimizer=keras.optimizers.Adam(1e-3))
    one_row = lambda: tf.data.Dataset.from_tensor_slices(x[:300]).batch(128).map(
        lambda b: (b, tf.constant([[0.5]])))
    shared.fit(one_row(), epochs=1, verbose=0)
    assert shared.train_function.padded == 1
    assert shared.evaluate(one_row(), verbose=0) == pytest.approx(
        -shared.log_prob(x[:300], context=[[0.5]]).numpy().mean(), rel=1e-5)
    # as after a validation_split (800 rows to train on: 3 x 256 + 32)
    rows.clear()
    padded.fit(x, batch_size=256, epochs=1, validation_split=0.2, verbose=0)
    assert rows == [256] * 4 + [200]
    # never for a layer that updates state in training (BatchNorm would see the
    # repeats) or for a plain graph step, which takes any batch size
    with_state = kerasflows.Flow([L.BatchNorm(), L.AffineCoupling(hidden_units=(8,))],
                                 event_dim=2)
    with_state.compile(optimizer="adam")
    assert not with_state.pads_short_batches()
    padded.compile(optimizer="adam", jit_compile=False)
    assert not padded.pads_short_batches()


def test_flat_step_calls_conditional_and_where_keras_loop_is_kept():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(600, 3)).astype("float32")
    x = (c[:, :2] + 0.1 * rng.normal(size=(600, 2))).astype("float32")
    make = lambda: M.MAF(2, num_layers=2, hidden_units=(16,), context_dim=3)
    fast, fast_hist = _twin_fits(make, (x, c), True, batch_size=128, epochs=2)   # XLA
    keras_flow, keras_hist = _twin_fits(make, (x, c), False, batch_size=128, epochs=2)
    assert isinstance(fast.train_function, training.FlatStepCalls)
    np.testing.assert_allclose(fast_hist["loss"], keras_hist["loss"], rtol=1e-5)
    for a, b in zip(fast.trainable_variables, keras_flow.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
    # Keras' own loop where it does something else: several steps per call, eager runs.
    flow = M.RealNVP(2, num_layers=2, hidden_units=(8,))
    flow.compile(optimizer="adam", steps_per_execution=4, jit_compile=False)
    flow.fit(x, batch_size=64, epochs=1, verbose=0)
    assert not isinstance(flow.train_function, training.FlatStepCalls)
    flow.compile(optimizer="adam", run_eagerly=True)
    flow.fit(x, batch_size=64, epochs=1, verbose=0)
    assert not isinstance(flow.train_function, training.FlatStepCalls)
    flow.compile(optimizer="adam", jit_compile=False)    # a plain graph: flat calls too
    hist = flow.fit(x, batch_size=64, epochs=2, verbose=0)
    assert isinstance(flow.train_function, training.FlatStepCalls)
    assert np.isfinite(hist.history["loss"]).all()


@pytest.mark.parametrize("flat", [True, False])
def test_first_fit_traces_the_step_once_with_the_optimizer_built_before(flat):
    x = datasets.load("moons", n=256)
    flow = M.MAF(2, num_layers=2, hidden_units=(8,))
    flow.flat_step_calls = flat
    flow.compile(optimizer="adam", jit_compile=False)
    traces, made_inside = [], []
    keras_step = flow.train_step
    flow.train_step = lambda data: (traces.append(1), keras_step(data))[1]

    def creator(next_creator, **kwargs):
        made_inside.append((kwargs.get("name"), tf.inside_function()))
        return next_creator(**kwargs)

    with tf.variable_creator_scope(creator):
        hist = flow.fit(x, batch_size=128, epochs=2, verbose=0)
    assert flow.optimizer.built and np.isfinite(hist.history["loss"]).all()
    # A trace that makes variables is traced again without: the optimizer's
    # moments come first, outside the step, so the step is traced once.
    assert [name for name, inside in made_inside if inside] == []
    assert len(traces) == 1


def test_flat_calls_give_the_functions_results_and_trace_once_per_kind_of_batch():
    v = tf.Variable(2.0)
    fn = tf.function(lambda d: {"s": tf.reduce_sum(d[0] * v, 0) + (0.0 if d[1] is None
                                                                  else tf.reduce_sum(d[1]))})
    calls = training.FlatCalls(fn)
    rng = np.random.default_rng(0)
    for rows in (8, 5, 8):
        a, b = (rng.normal(size=s).astype("float32") for s in ((rows, 3), (rows,)))
        np.testing.assert_allclose(calls((a, b))["s"], fn((tf.constant(a), tf.constant(b)))["s"],
                                   rtol=1e-6)
        v.assign_add(1.0)                          # captured variables are read on every call
    assert calls.traces == 1
    np.testing.assert_allclose(calls((a, None))["s"], (a * v.numpy()).sum(0), rtol=1e-6)
    assert calls.traces == 2                       # another kind of batch: traced once more


def test_auto_jit_compile_is_xla_on_cpu_too(tmp_path):
    flow = M.MAF(2, num_layers=2, hidden_units=(8,))
    flow.compile(optimizer="adam")                    # Keras alone: no XLA without a GPU
    assert flow.jit_compile is True
    x = datasets.load("moons", n=256)
    flow.fit(x, batch_size=128, epochs=1, verbose=0)
    assert flow.train_function._fn._jit_compile
    flow.save(tmp_path / "f.keras")
    assert keras.models.load_model(tmp_path / "f.keras").jit_compile is True
    flow.compile(optimizer="adam", jit_compile=False)
    assert flow.jit_compile is False
    flow.fit(x, batch_size=128, epochs=1, verbose=0)
    assert not flow.train_function._fn._jit_compile
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():   # as Keras: no XLA here
        mirrored = M.MAF(2, num_layers=2, hidden_units=(8,))
        mirrored.compile(optimizer="adam")
    assert mirrored.jit_compile is False


def test_bad_data_fails_before_training():
    flow = M.RealNVP(2, num_layers=2, hidden_units=(8,))
    flow.compile(optimizer="adam", jit_compile=False)
    x = datasets.load("moons", n=256)
    x[17, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf.*rows \\[17\\]"):
        flow.fit(x, epochs=1, verbose=0)
    x[17, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        flow.fit(x[:100], validation_data=x, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"evaluate's data contains 1 NaN or inf values "
                                         r"\(first in rows \[17\]\); remove or impute them "
                                         r"first\.$"):      # (not "before training")
        flow.evaluate(x, verbose=0)
    with pytest.raises(ValueError, match=r"expected inputs of shape \(batch, 2\); received shape \(5, 3\)"):
        flow.fit(np.zeros((5, 3), "float32"), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="no targets"):
        flow.fit(x, x, epochs=1, verbose=0)
    # float64 values beyond float32's range: finite as given, inf once Keras casts them
    # (a 1.8e308 "missing" marker made every weight NaN without a word)
    wide = datasets.load("moons", n=256).astype(np.float64)
    wide[9, 0] = 1e39
    before = [w.numpy() for w in flow.weights]
    beyond = r"holds 1 values beyond float32's range \(first in rows \[9\]; it holds "
    for run in (lambda: flow.fit(wide, epochs=1, verbose=0),
                lambda: flow.evaluate(wide, verbose=0)):
        with pytest.raises(ValueError, match=beyond):
            run()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"training data hold NaN or inf in "
                       r"a batch of the tf.data stream, or values beyond float32's range"):
        flow.fit(tf.data.Dataset.from_tensor_slices(wide).batch(64), epochs=1, verbose=0)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, flow.weights))
    wide[9, 0] = 3e38                                       # within float32: taken
    assert not np.isnan(flow.evaluate(wide, verbose=0))


def test_integer_data_and_labels_train_and_a_failed_fit_leaves_the_flow_usable():
    x = np.random.default_rng(0).integers(-3, 4, size=(256, 2))
    flow = M.MAF(2, num_layers=1, hidden_units=(8,))
    flow.compile(optimizer="adam", jit_compile=False)
    stream = tf.data.Dataset.from_tensor_slices(x).batch(64)      # int64 batches
    assert np.isfinite(flow.fit(stream, epochs=1, verbose=0).history["loss"]).all()
    labels = np.arange(256) % 3                                     # int class labels
    cond = M.RealNVP(2, num_layers=2, hidden_units=(8,), context_dim=1,
                     context_encoder=L.ClassEmbedding(3, 4))
    cond.compile(optimizer="adam", jit_compile=False)
    assert np.isfinite(cond.fit((x, labels[:, None]), epochs=1, verbose=0,
                                batch_size=64).history["loss"]).all()
    # a fit whose first trace fails (a stream of the wrong width) used to leave a
    # train function that could never create its variables: every later fit failed
    fresh = M.MAF(2, num_layers=1, hidden_units=(8,))
    fresh.compile(optimizer="adam", jit_compile=False)
    wide = tf.data.Dataset.from_tensor_slices(np.zeros((64, 3), "float32")).batch(32)
    with pytest.raises(ValueError, match=r"inputs of shape \(batch, 2\)"):
        fresh.fit(wide, epochs=1, verbose=0)
    assert np.isfinite(fresh.fit(x, epochs=1, verbose=0).history["loss"]).all()


def test_fit_and_evaluate_before_compile_say_so():
    flow = M.MAF(2, num_layers=1, hidden_units=(4,))
    x = datasets.load("moons", n=100)
    for call in (flow.fit, flow.evaluate):
        with pytest.raises(ValueError, match=r"You must call `compile\(\)`"):
            call(x, verbose=0)
    assert flow.predict(x, verbose=0).shape == (100,)      # as in Keras: no compile needed


def test_empty_data_and_class_weight_raise():
    glow = M.Glow(2, num_layers=2, hidden_units=(8,))
    glow.compile(optimizer="adam", jit_compile=False)
    x = np.zeros((0, 2), "float32")
    # ActNorm used to initialise from the 0 rows: NaN weights for good
    with pytest.raises(ValueError, match=r"training data has no rows \(shape \(0, 2\)\)"):
        glow.fit(x, verbose=0)
    with pytest.raises(ValueError, match="validation data has no rows"):
        glow.fit(np.ones((8, 2), "float32"), validation_data=x, verbose=0)
    with pytest.raises(ValueError, match="needs at least one row"):
        glow.initialize(x)
    assert all(np.isfinite(v.numpy()).all() for v in glow.weights)
    with pytest.raises(ValueError, match="no `class_weight`.*sample_weight"):
        glow.fit(np.ones((8, 2), "float32"), class_weight={0: 1.0}, verbose=0)


def test_wrong_shapes_and_missing_context_are_named():
    flow = M.RealNVP(2, num_layers=2, hidden_units=(8,))
    with pytest.raises(ValueError, match=r"\(batch, 2\).*\(4, 3\)"):
        flow.log_prob(np.zeros((4, 3), "float32"))
    with pytest.raises(ValueError, match=r"\(batch, 2\).*\(4,\)"):
        flow.log_prob(np.zeros(4, "float32"))
    cond = M.RealNVP(2, num_layers=2, hidden_units=(8,), context_dim=3)
    with pytest.raises(ValueError, match="conditional.*context"):
        cond.log_prob(np.zeros((4, 2), "float32"))
    with pytest.raises(ValueError, match="conditional.*context"):
        cond.sample(4)
    with pytest.raises(ValueError, match=r"context of shape \(batch, 3\)"):
        cond.log_prob(np.zeros((4, 2), "float32"), context=np.zeros((4, 2), "float32"))
    with pytest.raises(ValueError, match="not conditional"):
        flow.log_prob(np.zeros((4, 2), "float32"), context=np.zeros((4, 3), "float32"))
    with pytest.raises(ValueError, match="tf.data.Dataset.*predict"):
        flow.log_prob(tf.data.Dataset.from_tensor_slices(np.zeros((4, 2), "float32")))


@pytest.mark.parametrize("kwargs", [{"loss": "mse"}, {"metrics": ["mae"]},
                                    {"weighted_metrics": ["mae"]}, {"loss_weights": [1.0]}])
def test_compile_refuses_losses_and_metrics_that_need_targets(kwargs):
    flow = M.RealNVP(2, num_layers=2, hidden_units=(8,))
    (name, value), = kwargs.items()
    with pytest.raises(ValueError, match=f"no `{name}`.*{name}="):
        flow.compile(optimizer="adam", **kwargs)
    # what a saved config holds
    flow.compile(optimizer="adam", metrics=[], loss=None, jit_compile=False)
    assert flow.fit(np.zeros((8, 2), "float32"), epochs=1, verbose=0).history["loss"]


def test_validation_data_in_keras_one_tuple_form():
    x = datasets.load("moons", n=256, seed=0)
    c = np.random.default_rng(0).normal(size=(256, 3)).astype("float32")
    cond = M.RealNVP(2, num_layers=2, hidden_units=(8,), context_dim=3)
    cond.compile(optimizer="adam", jit_compile=False)
    for val in [(x[:64], c[:64]), ((x[:64], c[:64]),)]:
        history = cond.fit((x, c), validation_data=val, epochs=1, verbose=0).history
        assert np.isfinite(history["val_loss"][0])
    want = cond.evaluate((x[:64], c[:64]), verbose=0)
    assert history["val_loss"][0] == pytest.approx(want, rel=1e-5)


class _Batches(keras.utils.PyDataset):
    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]


def _stream(kind, arrays, batch=64):
    """`arrays` (x, or (x, context)) as a stream of batches of one kind."""
    if kind == "tf.data":
        return tf.data.Dataset.from_tensor_slices(arrays).batch(batch)
    n = len(arrays[0]) if isinstance(arrays, tuple) else len(arrays)
    batches = [tuple(a[i:i + batch] for a in arrays) if isinstance(arrays, tuple)
               else arrays[i:i + batch] for i in range(0, n, batch)]
    return _Batches(batches) if kind == "pydataset" else (b for b in batches)


@pytest.mark.parametrize("kind", ["tf.data", "pydataset", "generator"])
@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "conditional"])
def test_fit_evaluate_predict_take_streams_of_batches(kind, conditional):
    x = datasets.load("moons", n=256, seed=0) + np.float32(3.0)
    c = np.random.default_rng(0).normal(size=(256, 3)).astype("float32")
    data = (x, c) if conditional else x
    flow = M.Glow(2, num_layers=1, hidden_units=(8,), context_dim=3 if conditional else None)
    # a plain graph step: what is tested is outside it (XLA: test_jit_compiled_training_...)
    flow.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    history = flow.fit(_stream(kind, data), validation_data=_stream(kind, data), epochs=1,
                       verbose=0).history
    # ActNorm initialised from the stream's first batch (data shifted by +3)
    norms = [l for l in flow.flow_layers if isinstance(l, kerasflows.layers.ActNorm)]
    assert norms and all(bool(l.initialized.numpy()) for l in norms)
    assert np.all(np.abs(norms[-1].data_shift().numpy()) > 1.0)
    log_p = flow.log_prob(x, context=c if conditional else None).numpy()
    assert history["val_loss"][0] == pytest.approx(-log_p.mean(), rel=1e-5)
    assert flow.evaluate(_stream(kind, data), verbose=0) == pytest.approx(-log_p.mean(), rel=1e-5)
    np.testing.assert_allclose(flow.predict(_stream(kind, data), verbose=0), log_p, rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("kind", ["pydataset", "generator"])
def test_weighted_batches_of_a_stream_train_and_evaluate_to_the_weighted_mean(kind, jit):
    """(x, None, sample_weight), the form the fit error for sample_weight= with a stream
    names: a generator's None reached the step as a tf.data Optional, and a
    PyDataset's failed in Keras' adapter."""
    x = datasets.load("moons", n=256, seed=0)
    w = np.random.default_rng(1).uniform(0.0, 2.0, 256).astype("float32")
    batches = [(x[i:i + 64], None, w[i:i + 64]) for i in range(0, 256, 64)]
    stream = lambda: _Batches(batches) if kind == "pydataset" else (b for b in batches)
    flow = M.RealNVP(2, num_layers=1, hidden_units=(8,))
    flow.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=jit)
    log_p = flow.log_prob(x).numpy()
    want = -(log_p * w).sum() / w.sum()
    assert flow.fit(stream(), epochs=1, verbose=0).history["loss"][0] == pytest.approx(
        want, rel=1e-5)
    assert flow.evaluate(stream(), verbose=0) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("kind", ["tf.data", "pydataset", "generator"])
def test_nan_in_a_stream_raises_naming_the_data_and_predict_gives_nan(kind):
    x = datasets.load("moons", n=256, seed=0)
    bad = x.copy()
    bad[200, 1] = np.nan                  # batch 3 of 64 rows, its row 8
    flow = M.MAF(2, num_layers=1, hidden_units=(8,))
    flow.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    # Keras re-raises a generator's error as InvalidArgumentError, with its message
    errors = (ValueError, tf.errors.InvalidArgumentError)
    batch = "" if kind == "tf.data" else r", batch 3, contains 1"
    with pytest.raises(errors, match=f"Flow.fit's training data{batch}.*NaN or inf"):
        flow.fit(_stream(kind, bad), epochs=1, verbose=0)
    with pytest.raises(errors, match=f"Flow.fit's validation data{batch}.*NaN or inf"):
        flow.fit(_stream(kind, x), validation_data=_stream(kind, bad), epochs=1, verbose=0)
    with pytest.raises(errors, match=f"Flow.evaluate's data{batch}.*NaN or inf"):
        flow.evaluate(_stream(kind, bad), verbose=0)
    log_p = flow.predict(_stream(kind, bad), verbose=0)
    assert np.isnan(log_p[200]) and np.isfinite(np.delete(log_p, 200)).all()
    # and a stream's weights: finite and >= 0
    w = np.ones(256, "float32")
    w[70] = -1.0
    weighted = [(x[i:i + 64], None, w[i:i + 64]) for i in range(0, 256, 64)]
    if kind == "tf.data":
        stream = tf.data.Dataset.from_tensor_slices((x, w)).batch(64).map(
            lambda a, b: (a, None, b))
    else:
        stream = _Batches(weighted) if kind == "pydataset" else iter(weighted)
    with pytest.raises(errors, match="Flow.fit's training data.*sample weights .*must be "
                                     "finite and >= 0"):
        flow.fit(stream, epochs=1, verbose=0)
    # the flow is still usable after the errors
    assert np.isfinite(flow.fit(_stream(kind, x), epochs=1, verbose=0).history["loss"]).all()


@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "conditional"])
@pytest.mark.parametrize("kind", ["tf.data", "pydataset", "generator"])
def test_a_stream_outside_the_data_end_layers_domain_raises(kind, conditional):
    """A 0 in a batch of positive data for a flow ending in Exp turned every weight
    NaN: the batches are checked against the data end's domain as for NaN (the
    context is not: its values are any reals)."""
    x = np.random.default_rng(0).lognormal(0, 0.5, (256, 2)).astype("float32")
    c = -np.ones((256, 1), "float32")
    bad = x.copy()
    bad[200, 1] = 0.0                     # batch 3 of 64 rows, its row 8
    keras.utils.set_random_seed(0)
    context_dim = 1 if conditional else None
    flow = kerasflows.Flow([kerasflows.layers.AffineCoupling(hidden_units=(8,),
                                                            context_dim=context_dim),
                            kerasflows.layers.Exp(name="end")], 2, context_dim=context_dim)
    flow.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    data = lambda a: _stream(kind, (a, c) if conditional else a)
    errors = (ValueError, tf.errors.InvalidArgumentError)
    where = (r" hold values outside .* in a batch of the tf.data stream"
             if kind == "tf.data" else r", batch 3: row 8, column 1 is 0\.0, ")
    message = r"outside \(0, inf\), the domain of the flow's data end, Exp 'end'"
    with pytest.raises(errors, match=f"Flow.fit's training data(?s:.*){message}"):
        flow.fit(data(bad), epochs=1, verbose=0)
    with pytest.raises(errors, match=f"Flow.fit's training data{where}"):
        flow.fit(data(bad), epochs=1, verbose=0)
    with pytest.raises(errors, match=f"Flow.fit's validation data{where}"):
        flow.fit(data(x), validation_data=data(bad), epochs=1, verbose=0)
    with pytest.raises(errors, match=f"Flow.evaluate's data{where}"):
        flow.evaluate(data(bad), verbose=0)
    assert all(np.isfinite(w.numpy()).all() for w in flow.weights)
    assert np.isfinite(flow.fit(data(x), epochs=1, verbose=0).history["loss"]).all()


@pytest.mark.parametrize("dtype", ["float32", "int64"])
@pytest.mark.parametrize("kind", ["tf.data", "pydataset", "generator"])
def test_a_stream_of_labels_a_class_embedding_does_not_know_raises(kind, dtype):
    """Arrays were checked; a stream's label 3 for ClassEmbedding(3) turned every
    weight NaN without a word."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=(256, 1)).astype(dtype)
    x = (rng.normal(size=(256, 2)) + 2 * labels).astype("float32")
    bad = labels.copy()
    bad[200] = 3                          # batch 3 of 64 rows, its row 8
    flow = M.MAF(2, num_layers=1, hidden_units=(8,), context_dim=1,
                 context_encoder=L.ClassEmbedding(3))
    flow.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    errors = (ValueError, tf.errors.InvalidArgumentError)
    # (tf.data: TensorFlow ends the message with "Tensor had NaN values", said to be the flag's)
    where = (r" hold labels outside 0..2 in a batch of the tf.data stream .* the NaN named "
             r"next is the check's, not the data's\] : Tensor had NaN values" if kind == "tf.data"
             else r", batch 3, context: labels for ClassEmbedding\(num_classes=3\) are 0..2; "
                  r"received 3.0 in row 8")
    with pytest.raises(errors, match=f"Flow.fit's training data{where}"):
        flow.fit(_stream(kind, (x, bad)), epochs=1, verbose=0)
    with pytest.raises(errors, match=f"Flow.fit's validation data{where}"):
        flow.fit(_stream(kind, (x, labels)), validation_data=_stream(kind, (x, bad)), epochs=1,
                 verbose=0)
    with pytest.raises(errors, match=f"Flow.evaluate's data{where}"):
        flow.evaluate(_stream(kind, (x, bad)), verbose=0)
    assert all(np.isfinite(w.numpy()).all() for w in flow.weights)
    assert np.isfinite(flow.fit(_stream(kind, (x, labels)), epochs=1, verbose=0)
                       .history["loss"]).all()


@pytest.mark.parametrize("split", [-0.5, 1.0, 1.5, True, "0.1", float("nan")])
def test_a_validation_split_outside_0_to_1_is_refused_naming_it(split):
    # -0.5 failed with an IndexError in the row count; 1.5 trained on no rows
    flow = M.RealNVP(2, num_layers=1, hidden_units=(8,))
    flow.compile(optimizer="adam", jit_compile=False)
    with pytest.raises(ValueError, match=r"`validation_split` is the share of the rows held "
                                         r"out, a number in \[0, 1\)\. Received: "
                                         rf"validation_split={re.escape(repr(split))}"):
        flow.fit(np.zeros((64, 2), "float32"), validation_split=split, epochs=1, verbose=0)


@pytest.mark.parametrize("kind", ["tf.data", "pydataset", "generator"])
def test_validation_split_of_a_stream_is_refused_naming_the_streams_type(kind):
    # Keras' own refusal named what fit had wrapped the stream in (a _ParallelMapDataset,
    # kerasflows.fit_data._KerasBatches), not the user's stream
    flow = M.RealNVP(2, num_layers=1, hidden_units=(8,))
    flow.compile(optimizer="adam", jit_compile=False)
    stream = _stream(kind, np.zeros((128, 2), "float32"))
    name = {"tf.data": "_BatchDataset", "pydataset": "_Batches", "generator": "generator"}[kind]
    with pytest.raises(ValueError, match=rf"`validation_split` splits arrays, not a stream of "
                                         rf"batches \(received a {name} with validation_split=0.2\)"
                                         r".*validation_data="):
        flow.fit(stream, validation_split=0.2, epochs=1, verbose=0)


@pytest.mark.parametrize("kind", ["tf.data", "pydataset", "generator"])
def test_unconditional_flow_refuses_pairs_in_a_stream(kind):
    x = np.zeros((128, 2), "float32")
    flow = M.RealNVP(2, num_layers=2, hidden_units=(8,))
    flow.compile(optimizer="adam", jit_compile=False)
    with pytest.raises(ValueError, match=r"received a pair \(x, y\)"):
        flow.fit(_stream(kind, (x, x)), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="no targets"):
        flow.evaluate(x, x, verbose=0)


@pytest.mark.parametrize("kind", ["tf.data", "pydataset", "generator"])
def test_conditional_flow_refuses_weights_as_targets_in_a_stream(kind):
    # ((x, context), w) is Keras' (inputs, targets): the weights were dropped silently
    x, c, w = np.zeros((128, 2), "float32"), np.zeros((128, 3), "float32"), np.ones(128)
    flow = M.RealNVP(2, num_layers=1, hidden_units=(8,), context_dim=3)
    flow.compile(optimizer="adam", jit_compile=False)
    if kind == "tf.data":
        stream = lambda: tf.data.Dataset.from_tensor_slices(((x, c), w)).batch(64)
    else:
        batches = [((x[i:i + 64], c[i:i + 64]), w[i:i + 64]) for i in (0, 64)]
        stream = lambda: _Batches(batches) if kind == "pydataset" else iter(batches)
    for call in (lambda: flow.fit(stream(), epochs=1, verbose=0),
                 lambda: flow.evaluate(stream(), verbose=0)):
        with pytest.raises((ValueError, tf.errors.InvalidArgumentError),
                           match=r"\(\(x, context\), None, sample_weight\)"):
            call()


@pytest.mark.parametrize("kind", ["tf.data", "pydataset", "generator"])
def test_stream_batches_of_other_forms_than_the_flows_raise_naming_its_forms(kind):
    """A conditional flow's tf.data stream of x alone, of dicts or of flat (x, context,
    w) failed inside the check map (iterating a symbolic tensor, KeyError: 0); an
    unconditional flow's (x, y, w) trained, y ignored."""
    x, c, w = np.zeros((128, 2), "float32"), np.zeros((128, 3), "float32"), np.ones(128)
    conditional = M.RealNVP(2, num_layers=1, hidden_units=(8,), context_dim=3)
    plain = M.RealNVP(2, num_layers=1, hidden_units=(8,))
    for flow in (conditional, plain):
        flow.compile(optimizer="adam", jit_compile=False)

    def stream(*arrays, form=tuple):
        if kind == "tf.data":
            return tf.data.Dataset.from_tensor_slices(form(arrays)).batch(64)
        batches = [form(tuple(a[i:i + 64] for a in arrays)) for i in (0, 64)]
        return _Batches(batches) if kind == "pydataset" else iter(batches)
    cases = [(conditional, lambda: stream(x, form=lambda a: a[0]), "received x alone"),
             (conditional, lambda: stream(x, c, form=lambda a: {"x": a[0], "c": a[1]}),
              r"received a dict \(keys \['c', 'x'\]\)"),
             (conditional, lambda: stream(x, c, w), r"first item is not \(x, context\)"),
             (plain, lambda: stream(x, c, w), r"has targets y, and a flow has none")]
    for flow, data, message in cases:
        forms = (r"\(x, context\), \(\(x, context\),\) or" if flow is conditional
                 else r"x, \(x,\) or \(x, None, sample_weight\)")
        for call in (lambda: flow.fit(data(), epochs=1, verbose=0),
                     lambda: flow.evaluate(data(), verbose=0)):
            with pytest.raises(ValueError, match=f"(?s)(?=.*{message})(?=.*{forms})"):
                call()


def test_keras_file_keeps_the_optimizer_and_training_resumes_identically(tmp_path, recwarn):
    x = datasets.load("moons", n=512, seed=0)
    flow = M.MAF(2, num_layers=2, hidden_units=(16,))
    flow.compile(optimizer=keras.optimizers.Adam(3e-3))
    flow.fit(x, batch_size=128, epochs=1, shuffle=False, verbose=0)
    flow.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    assert not [w for w in recwarn if "compile" in str(w.message)]
    assert loaded.compiled and type(loaded.optimizer) is keras.optimizers.Adam
    assert int(loaded.optimizer.iterations.numpy()) == 4
    assert float(loaded.optimizer.learning_rate.numpy()) == pytest.approx(3e-3)
    for a, b in zip(flow.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # the next epoch from the file is the next epoch of the original
    want = flow.fit(x, batch_size=128, epochs=1, shuffle=False, verbose=0).history["loss"]
    got = loaded.fit(x, batch_size=128, epochs=1, shuffle=False, verbose=0).history["loss"]
    assert got == pytest.approx(want, rel=1e-6)
    for a, b in zip(flow.weights, loaded.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


FRESH_PROCESS_SCRIPT = r"""
import json, sys
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import kerasflows as kf      # the first kerasflows import: the package's __init__ alone
readme_names = [kf.training.make_train_step.__name__, kf.distributed.train_flow.__name__,
                kf.export.load_saved_model.__name__, kf.graph_calls.__name__,
                kf.inference.tabulate.__name__, kf.recipes.__name__]
import keras
from kerasflows import models, datasets
x = datasets.load("moons", n=64, seed=0)
from kerasflows import layers as kl
batch_norm_flow = lambda: kf.Flow([kl.AffineCoupling(hidden_units=(16,)), kl.BatchNorm(),
                                   kl.Permute([1, 0]), kl.AffineCoupling(hidden_units=(16,))],
                                  event_dim=2)

def one_step(strategy, batch_norm=False, rows=64, batch_size=64, **fit_kwargs):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        flow = models.RealNVP(2, num_layers=2, hidden_units=(16,))
        if batch_norm:          # its statistics over the whole batch, not each replica's half
            flow = batch_norm_flow()
        for i, w in enumerate(flow.trainable_weights):  # move off the zero init
            w.assign(0.1 * np.cos(np.arange(np.prod(w.shape)) + i).reshape(w.shape))
        # a plain graph step on one device too, as the mirrored one is (Keras: no XLA
        # under a MirroredStrategy): the XLA compilations cost a second per case
        flow.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    hist = flow.fit(x[:rows], batch_size=batch_size, epochs=1, shuffle=False, verbose=0,
                    **fit_kwargs)
    with strategy.scope():
        evaluated = flow.evaluate(x[:rows], batch_size=batch_size, verbose=0)
    return ([hist.history["loss"][0], evaluated],
            [w.numpy().tolist() for w in flow.trainable_weights])

mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert mirrored.num_replicas_in_sync == 2
result = {}
# weights 0 on the first replica's half and uneven on the other's: each replica's
# own weighted mean, averaged, gave half the step and another direction
w = np.concatenate([np.zeros(32), np.linspace(0.5, 3.0, 32)]).astype("float32")
# batches split unevenly (the last one of 23 rows in 4s: 2 + 1; of 21: 1 + 0): each
# replica's own mean, averaged, gave another step, and a replica with no rows NaN
for name, kwargs in (("plain", {}), ("weighted", {"sample_weight": w}),
                     ("batch_norm", {"batch_norm": True}),
                     ("uneven", {"rows": 23, "batch_size": 4}),
                     ("a_replica_empty", {"rows": 21, "batch_size": 4})):
    l1, w1 = one_step(mirrored, **kwargs)
    l0, w0 = one_step(tf.distribute.get_strategy(), **kwargs)
    result[name] = {"loss": [l0, l1], "max_weight_diff": max(
        float(np.max(np.abs(np.array(a) - np.array(b)))) for a, b in zip(w0, w1))}
# train_flow's step too (its loss and gradient compiled apart, but for BatchNorm)
from kerasflows.distributed import train_flow
runs = [train_flow(batch_norm_flow, x, epochs=1, batch_size=64, seed=0, verbose=0,
                   strategy=s, jit_compile=False) for s in (None, mirrored)]
result["train_flow_batch_norm"] = {
    "loss": [[h["loss"][0]] for _, h in runs], "max_weight_diff": max(
        float(np.max(np.abs(a - b))) for a, b in zip(*(f.get_weights() for f, _ in runs)))}
json.dump({"readme_names": readme_names, "mirrored": result}, sys.stdout)
"""


def test_a_frozen_layer_stays_frozen_through_a_keras_file_and_training_resumes(tmp_path):
    """Keras does not pass a config's trainable=False to the sublayers a layer makes
    when built: the loaded flow trained its frozen layer, and dropped the optimizer
    state, whose variables no longer matched."""
    x = datasets.load("moons", n=512, seed=0)
    flow = M.RealNVP(2, num_layers=2, hidden_units=(8,))
    flow.flow_layers[0].trainable = False
    flow.compile(optimizer=keras.optimizers.Adam(1e-2))
    flow.fit(x, batch_size=128, epochs=1, verbose=0)
    flow.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    assert len(loaded.trainable_weights) == len(flow.trainable_weights)
    assert int(loaded.optimizer.iterations) == int(flow.optimizer.iterations) == 4
    frozen = [w.numpy() for w in loaded.flow_layers[0].weights]
    want = flow.fit(x, batch_size=128, epochs=1, shuffle=False, verbose=0).history["loss"]
    got = loaded.fit(x, batch_size=128, epochs=1, shuffle=False, verbose=0).history["loss"]
    assert got == pytest.approx(want, rel=1e-6)
    for before, after in zip(frozen, loaded.flow_layers[0].weights):
        np.testing.assert_array_equal(after.numpy(), before)


def test_in_a_fresh_process_import_reaches_the_readme_modules_and_mirrored_steps_equal_one_device():
    """Two checks that need a process of their own, in one (a TensorFlow import is
    8 s): `import kerasflows` alone reaches every module the README names; a
    MirroredStrategy step over two logical CPUs (configured before TensorFlow
    starts) equals the single-device step, with and without sample weights."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", FRESH_PROCESS_SCRIPT], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["readme_names"] == ["make_train_step", "train_flow", "load_saved_model",
                                   "kerasflows.graph_calls", "tabulate", "kerasflows.recipes"]
    for name, res in got["mirrored"].items():
        for l0, l1 in zip(*res["loss"]):        # fit's loss, and evaluate's
            assert abs(l0 - l1) < 1e-5 * abs(l0), (name, res)
        # (Adam's first step is +-lr for any gradient, float noise included: train_flow's)
        assert res["max_weight_diff"] < (1e-4 if name.startswith("train_flow") else 1e-6), (
            name, res)


def test_fit_warns_of_columns_with_no_likelihood_optimum():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3)).astype("float32")
    flow = M.RealNVP(3, num_layers=1, hidden_units=(8,))
    flow.compile(optimizer="adam", jit_compile=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # nothing to say about real data
        flow.fit(x, epochs=1, verbose=0)
    constant, whole = x.copy(), x.copy()
    constant[:, 1] = 2.0
    whole[:, 0], whole[:, 2] = rng.integers(0, 9, 300), np.round(x[:, 2] * 10)
    with pytest.warns(UserWarning, match=r"column\(s\) 1 of the training data hold one value"):
        flow.fit(constant, epochs=1, verbose=0)
    with pytest.warns(UserWarning, match=r"column\(s\) 0, 2 of the training data hold whole "
                                         r"numbers only.*dequantization"):
        flow.fit(whole, epochs=1, verbose=0)
    conditional = M.MAF(3, num_layers=1, hidden_units=(8,), context_dim=1)
    conditional.compile(optimizer="adam", jit_compile=False)
    with pytest.warns(UserWarning, match=r"column\(s\) 1 of the training data hold one value"):
        conditional.fit((constant, x[:, :1]), epochs=1, verbose=0)
    with pytest.warns(UserWarning, match=r"the training data are one row; a density fitted "
                                         r"to a single point has no maximum"):
        flow.fit(x[:1], epochs=1, verbose=0)
    # constant in the rows it trains on, not in the held-out tail: the same warning
    split = x.copy()
    split[:270, 1] = 0.0
    with pytest.warns(UserWarning, match=r"column\(s\) 1 of the training data hold one value"):
        flow.fit(split, epochs=1, verbose=0, validation_split=0.1)


def test_fit_and_evaluate_weigh_array_data_by_sample_weight():
    """Keras drops `sample_weight` without targets; a flow's fit and evaluate use it.
    (A plain graph step, to spare XLA compiles: the weights under XLA are in
    test_flat_step_calls_train_and_evaluate_as_keras_loop.)"""
    x = datasets.load("moons", n=256, seed=0)
    w = np.where(x[:, 0] > 0.5, 4.0, 0.5).astype("float32")
    build = lambda: M.MAF(2, num_layers=1, hidden_units=(8,))
    fit = lambda data, **kw: _twin_fits(build, data, True, jit_compile=False, batch_size=128,
                                        epochs=1, **kw)
    unweighted = fit(x)[1]["loss"]
    flow, weighted = fit(x, sample_weight=w)
    assert abs(weighted["loss"][0] - unweighted[0]) > 1e-3
    nll = -flow.log_prob(x).numpy()
    for batch_size in (256, 32, 100):      # the weighted mean over all rows, not per batch
        np.testing.assert_allclose(
            flow.evaluate(x, sample_weight=w, batch_size=batch_size, verbose=0),
            np.sum(w * nll) / np.sum(w), rtol=1e-5)
    np.testing.assert_allclose(flow.evaluate(x, batch_size=256, verbose=0), nll.mean(), rtol=1e-5)
    # weighting every example alike changes nothing
    same = fit(x, sample_weight=np.full(256, 3.0))[1]["loss"]
    np.testing.assert_allclose(same, unweighted, rtol=1e-5)
    for bad, what in ((w[:10], r"shape \(256,\).*shape \(10,\)"),
                      (np.where(w > 1, -1.0, 1.0), "finite and >= 0"),
                      (np.full(256, np.nan), "finite and >= 0")):
        with pytest.raises(ValueError, match=f"Flow.fit: `sample_weight` must be .*{what}"):
            flow.fit(x, sample_weight=bad, verbose=0)
    bad = np.ones(256)
    bad[[7, 90]] = -2.5
    with pytest.raises(ValueError, match=r"received -2.5 for example 7 \(2 such weights"):
        flow.fit(x, sample_weight=bad, verbose=0)
    # a batch whose weights are all 0 leaves the flow as it is (loss 0, not 0 / 0)
    keras.utils.set_random_seed(0)
    initial = [v.numpy() for v in build().trainable_variables]
    zero, hist = fit(x[:128], sample_weight=np.zeros(128))
    assert hist["loss"] == [0.0]
    for a, b in zip(zero.trainable_variables, initial):
        np.testing.assert_array_equal(a.numpy(), b)
    # weighted validation data, Keras' (x_val, None, w_val)
    hist = flow.fit(x, epochs=1, verbose=0, batch_size=256, validation_data=(x, None, w),
                    validation_batch_size=32)
    np.testing.assert_allclose(hist.history["val_loss"],
                               np.sum(w * -flow.log_prob(x).numpy()) / np.sum(w), rtol=1e-5)
    with pytest.raises(ValueError, match="Flow.fit's validation_data: `sample_weight` must"):
        flow.fit(x, epochs=1, verbose=0, validation_data=(x, None, w[:5]))
    stream = tf.data.Dataset.from_tensor_slices(x).batch(64)
    with pytest.raises(ValueError, match="batches of a stream carry their own"):
        flow.fit(stream, sample_weight=w, verbose=0)
    # a stream's (x, None, w) batches are weighted too
    batches = tf.data.Dataset.from_tensor_slices((x, w)).batch(128).map(lambda a, b: (a, None, b))
    loss = _twin_fits(build, batches, True, jit_compile=False, epochs=1)[1]["loss"]
    np.testing.assert_allclose(loss, weighted["loss"], rtol=1e-4)


def test_keras_forms_of_data_and_their_mistakes_are_taken_or_named():
    """What an audit as a Keras user turned up: each form is taken, or the error
    names what was given and what is expected."""
    x = datasets.load("moons", n=256, seed=0)
    flow = M.MAF(2, num_layers=1, hidden_units=(8,))
    flow.compile(optimizer="adam", jit_compile=False)
    want = flow.evaluate(x[:64], verbose=0)
    for val in [(x[:64], None), [x[:64]], (x[:64],)]:       # Keras' unsupervised forms
        hist = flow.fit(x, validation_data=val, epochs=1, verbose=0).history
        assert np.isfinite(hist["val_loss"][0]), val
    assert flow.evaluate(x[:64].tolist(), verbose=0) == pytest.approx(
        flow.evaluate(x[:64], verbose=0), rel=1e-6)
    assert np.isfinite(flow.fit(x.tolist(), epochs=1, verbose=0).history["loss"]).all()
    assert np.isfinite(want)
    with pytest.raises(ValueError, match=r"unconditional.*received a pair.*context_dim"):
        flow.fit((x, x), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"unconditional.*received a pair \(list of two\)"):
        flow.fit([x, x[:, :1]], epochs=1, verbose=0)     # NumPy's "inhomogeneous" before
    with pytest.raises(ValueError, match=r"must be an array \[N, 2\]; received a list of 3"):
        flow.evaluate([x, x, x], verbose=0)
    empty = np.zeros((0, 2), "float32")
    with pytest.raises(ValueError, match=r"evaluate's data has no rows \(shape \(0, 2\)\)"):
        flow.evaluate(empty, verbose=0)
    with pytest.raises(ValueError, match=r"predict's data has no rows"):
        flow.predict(empty, verbose=0)
    with pytest.raises(ValueError, match=r"\(batch, 2\); received shape \(4, 3\)"):
        flow.predict(np.zeros((4, 3), "float32"), verbose=0)
    bad = x[:64].copy()
    bad[5, 0] = np.nan
    with pytest.raises(ValueError, match=r"evaluate's data contains 1 NaN or inf.*\[5\]"):
        flow.evaluate(bad, verbose=0)
    lp = flow.predict(bad, verbose=0)                 # a row's log-density, as log_prob
    assert np.isnan(lp[5]) and np.isfinite(np.delete(lp, 5)).all()


def test_class_labels_out_of_range_raise_before_training():
    x = datasets.load("moons", n=64, seed=0)
    flow = M.RealNVP(2, num_layers=2, hidden_units=(8,), context_dim=1,
                     context_encoder=L.ClassEmbedding(3, 4))
    flow.compile(optimizer="adam", jit_compile=False)
    before = [v.numpy() for v in flow.weights]
    labels = np.zeros((64, 1))
    labels[9] = 11
    with pytest.raises(ValueError, match=r"training data context: labels for ClassEmbedding"
                       r"\(num_classes=3\) are 0..2; received 11.0 in row 9"):
        flow.fit((x, labels), epochs=1, verbose=0)
    labels[9] = 2.6                                    # rounds to 3: out of range too
    with pytest.raises(ValueError, match="received 2.6 in row 9"):
        flow.fit((x, np.zeros((64, 1))), validation_data=(x, labels), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="evaluate's data context: labels"):
        flow.evaluate((x, labels), verbose=0)
    for a, b in zip(flow.weights, before):
        np.testing.assert_array_equal(a.numpy(), b)
    labels[9] = 2.4                                    # label 2
    assert np.isfinite(flow.fit((x, labels), epochs=1, verbose=0).history["loss"]).all()


def test_compile_refuses_an_optimizer_packed_by_make_train_step():
    x = datasets.load("moons", n=256, seed=0)
    flow = M.MAF(2, num_layers=1, hidden_units=(8,))
    optimizer = keras.optimizers.Adam(1e-3)
    step = training.make_train_step(flow, optimizer)
    float(step(x))
    with pytest.raises(ValueError, match="Flow.compile: this optimizer was built by "
                       "make_train_step on its packed layout"):
        flow.compile(optimizer=optimizer)
    flow.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    assert np.isfinite(flow.fit(x, epochs=1, verbose=0).history["loss"]).all()



def test_a_float64_flows_loss_and_evaluate_are_float64():
    # the loss tracker took floatx: a float64 flow's fit loss and evaluate were rounded
    # to float32 (1.8e-4 off at a loss of 932)
    x = np.random.default_rng(0).normal(300.0, 1.0, size=(64, 2))
    flow = M.RealNVP(2, num_layers=1, hidden_units=(4,), dtype="float64")
    flow.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=False)
    want = -np.mean(flow.log_prob(x).numpy())
    # (a stream: Keras' array adapter casts float64 arrays to floatx)
    data = tf.data.Dataset.from_tensor_slices(x).batch(64)
    assert abs(flow.evaluate(data, verbose=0) - want) < 1e-12 * abs(want)
    loss = flow.fit(data, epochs=1, verbose=0).history["loss"][0]
    assert abs(loss - want) < 1e-12 * abs(want)


def test_sample_weights_of_any_scale_weigh_as_the_flows_dtype_can():
    # the weights were rounded to float32: a float64 flow's evaluate with weights
    # * 1e-50 gave 0.0, * 1e50 nan, and fit with weights * 1e50 turned every weight
    # NaN; float32's own range failed so too (the weighted mean is scale-free)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 2)).astype("float32").astype("float64")
    w = rng.uniform(0.5, 2.0, 64)
    keras.config.set_floatx("float64")      # Keras' adapter casts float arrays to floatx
    try:
        flow = M.RealNVP(2, num_layers=1, hidden_units=(4,), dtype="float64")
        flow.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
        lp = flow.log_prob(x).numpy()
        want = -np.sum(w * lp) / np.sum(w)
        for scale in (1.0, 1e-50, 1e50, 1e-300):
            got = flow.evaluate(x, sample_weight=w * scale, batch_size=32, verbose=0)
            assert abs(got - want) < 1e-12 * abs(want), scale
        loss = flow.fit(x, sample_weight=w * 1e50, batch_size=32, epochs=1,
                        verbose=0).history["loss"]
        assert np.isfinite(loss).all()
        assert all(np.isfinite(v.numpy()).all() for v in flow.trainable_variables)
    finally:
        keras.config.set_floatx("float32")
    # floatx float32: the weights reach the loss in float32, whichever the flow's dtype
    for flow in (M.RealNVP(2, num_layers=1, hidden_units=(4,), dtype="float64"),
                 M.RealNVP(2, num_layers=1, hidden_units=(4,))):
        flow.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
        lp = flow.log_prob(x.astype(flow.compute_dtype)).numpy().astype("float64")
        want = -np.sum(w * lp) / np.sum(w)
        for scale in (1e-50, 1e50):
            got = flow.evaluate(x, sample_weight=w * scale, batch_size=32, verbose=0)
            np.testing.assert_allclose(got, want, rtol=1e-6)
        # a weight float32 cannot hold beside the largest counts as 0 (normalised
        # importance weights span that much; refusing them refused valid input)
        tiny, zero = w.copy(), w.copy()
        tiny[9], zero[9] = 1e-47, 0.0
        assert flow.evaluate(x, sample_weight=tiny, verbose=0) == pytest.approx(
            flow.evaluate(x, sample_weight=zero, verbose=0), rel=1e-6)


def test_fused_adam_updates_a_class_embedding_as_adam_of_its_summed_gradient():
    """A ClassEmbedding's gradient is a tf.IndexedSlices with a piece per example. The
    fused kernel takes it dense, the pieces of one class summed: the textbook Adam of
    the gradient (pinned here against NumPy). Keras' own Adam squares the pieces
    before summing them into its second moment (0.1 apart after 4 steps)."""
    x = datasets.load("moons", n=256, seed=0).astype("float32")
    labels = np.random.default_rng(0).integers(0, 3, size=(256, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    flow = kerasflows.Flow([L.MaskedAutoregressive(hidden_units=(8,), context_dim=4)],
                           event_dim=2, context_dim=1,
                           context_encoder=L.ClassEmbedding(3, features=4))
    flow.compile(optimizer=keras.optimizers.Adam(1e-2))
    table = next(w for w in flow.trainable_weights if w.path.endswith("table"))
    w, m, v = table.numpy().astype(np.float64), 0.0, 0.0
    for t, rows in enumerate(np.split(np.arange(256), 4), start=1):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(flow((x[rows], labels[rows]), training=True))
        grad = tape.gradient(loss, table)
        assert isinstance(grad, tf.IndexedSlices)
        g = tf.convert_to_tensor(grad).numpy().astype(np.float64)     # duplicates summed
        m, v = m + 0.1 * (g - m), v + 0.001 * (g * g - v)
        w -= 1e-2 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-7)
        flow.train_on_batch((x[rows], labels[rows]))
        np.testing.assert_allclose(table.numpy(), w, rtol=0, atol=1e-5)


def test_a_dropout_in_the_context_encoder_still_pads_the_short_last_batch(monkeypatch):
    """A Dropout's seed is training state (`sharded_step.training_state`), but a padded
    row (weight 0) adds nothing and the seed advances once a step either way: the
    short last batch runs on the full batches' executable, not compiled for anew."""
    rows = []
    plain_call = training.FlatCalls.__call__
    monkeypatch.setattr(training.FlatCalls, "__call__", lambda self, data: (
        rows.append(int(tf.nest.flatten(data)[0].shape[0])), plain_call(self, data))[1])
    x = datasets.load("moons", n=300, seed=0)      # batches of 128: the last has 44 rows
    c = np.random.default_rng(0).normal(size=(300, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    encoder = keras.Sequential([keras.layers.Dense(4), keras.layers.Dropout(0.5)])
    flow = M.MAF(2, num_layers=1, hidden_units=(8,), context_dim=1, context_encoder=encoder)
    flow.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    seed = encoder.layers[1].seed_generator.state
    start = seed.numpy().copy()
    history = flow.fit((x, c), batch_size=128, epochs=1, shuffle=False, verbose=0).history
    assert flow.pads_short_batches() and set(rows) == {128}
    assert flow.train_function.padded == 1 and flow.train_function.traces == 1
    np.testing.assert_array_equal(seed.numpy() - start, [0, 3])     # one draw a step
    assert np.isfinite(history["loss"][0])
