"""The custom training loop: same result as `fit`, and two workers on 127.0.0.1 under
`MultiWorkerMirroredStrategy` train one model that matches a single-process run."""

import json
import os
import re
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

import kerasflows
import kerasflows.distributed
from kerasflows import models
from kerasflows.cli import main
from kerasflows.distributed import epoch_order, get_strategy, train_flow


def _build():
    return models.RealNVP(event_dim=2, num_layers=2, hidden_units=(8,))


def test_loop_matches_fit_on_the_same_batches():
    x = kerasflows.datasets.load("moons", n=512, seed=1)
    flow, history = train_flow(_build, x, epochs=2, batch_size=128, learning_rate=1e-2, seed=3,
                               validation_data=x[:100], verbose=0, jit_compile=False)
    keras.utils.set_random_seed(3)
    reference = _build()
    reference.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    for epoch in range(2):
        fit = reference.fit(x[epoch_order(len(x), 3, epoch)], batch_size=128, epochs=1,
                            shuffle=False, verbose=0)
    for a, b in zip(flow.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert len(history["loss"]) == len(history["val_loss"]) == 2
    assert history["loss"][-1] == pytest.approx(fit.history["loss"][-1], rel=1e-4)


def test_conditional_loop_matches_fit_and_the_mirrored_strategy():
    rng = np.random.default_rng(0)
    c = rng.choice([-2.0, 2.0], size=(512, 1)).astype(np.float32)
    x = (c + 0.3 * rng.standard_normal((512, 2))).astype(np.float32)
    build = lambda: models.Glow(2, num_layers=2, hidden_units=(8,), context_dim=1)  # ActNorm
    kwargs = dict(epochs=2, batch_size=128, learning_rate=1e-2, seed=3, verbose=0,
                  jit_compile=False, context=c)
    flow, history = train_flow(build, x, validation_data=(x[:100], c[:100]), **kwargs)
    keras.utils.set_random_seed(3)
    reference = build()
    reference.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    for epoch in range(2):
        order = epoch_order(len(x), 3, epoch)
        fit = reference.fit((x[order], c[order]), batch_size=128, epochs=1, shuffle=False,
                            verbose=0)
    for a, b in zip(flow.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert history["loss"][-1] == pytest.approx(fit.history["loss"][-1], rel=1e-4)
    assert history["val_loss"][-1] == pytest.approx(
        -reference.log_prob(x[:100], context=c[:100]).numpy().mean(), rel=1e-4)
    mirrored, _ = train_flow(build, x, strategy=get_strategy("mirrored"), **kwargs)
    for a, b in zip(flow.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"context must be of shape \[512, C\], one row per "
                                         r"example; received 5 rows \(shape \(5, 1\)\)"):
        train_flow(build, x, epochs=1, context=c[:5])
    with pytest.raises(ValueError, match="context_dim=1 but the context given has None"):
        train_flow(build, x, epochs=1)


def test_bad_arguments_are_rejected():
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="epochs"):
        train_flow(_build, x, epochs=0)
    with pytest.raises(ValueError, match="1 NaN/inf"):
        train_flow(_build, np.array([[0.0, np.nan]], np.float32), epochs=1)
    with pytest.raises(ValueError, match="lr_decay"):
        train_flow(_build, x, epochs=1, lr_decay="step", verbose=0)
    with pytest.raises(ValueError, match="Unknown strategy 'tpu'"):
        get_strategy("tpu")


_COND = lambda: models.RealNVP(event_dim=2, num_layers=2, hidden_units=(8,), context_dim=1)
_LABELLED = lambda: models.RealNVP(event_dim=2, num_layers=1, hidden_units=(8,), context_dim=1,
                                   context_encoder=kerasflows.layers.ClassEmbedding(3, 4))


@pytest.mark.parametrize("build, args, kwargs, says", [
    # a NaN in a context of the right shape was reported as a wrong shape
    (_COND, lambda x, c: (x, np.where(np.arange(256)[:, None] == 5, np.nan, c)), {},
     r"context has 1 NaN/inf values \(the first at row 5, column 0: nan\); expected finite"),
    # validation data of the wrong width raised a TypeError after the first epoch
    (_build, lambda x, c: (x,), {"validation_data": np.zeros((20, 3))},
     r"validation_data must be of shape \[M, 2\]; received 3 columns \(shape \(20, 3\)\)"),
    # NaN in validation data trained on with val_loss nan
    (_build, lambda x, c: (x,), {"validation_data": np.r_[np.zeros((5, 2)), [[np.nan, 0]]]},
     r"validation_data has 1 NaN/inf values \(the first at row 5, column 0: nan\)"),
    (_COND, lambda x, c: (x, c), {"validation_data": (np.zeros((5, 2)), np.zeros((4, 1)))},
     r"validation_data's context must be of shape \[5, 1\], one row per example; received "
     r"4 rows"),
    (_COND, lambda x, c: (x, c), {"validation_data": np.zeros((5, 2))},
     r"validation_data must be \(x_val, context_val\) for a conditional flow"),
    # 1-D x raised from inside the step
    (_build, lambda x, c: (x[:, 0],), {},
     r"x must be 2-D, \[N, D\] \(one row per example\); received shape \(256,\)"),
    # float64 values beyond float32's range were called NaN/inf
    (_build, lambda x, c: (np.r_[x.astype(np.float64), [[1e300, 0]]],), {},
     r"x has 1 values beyond float32's range \(the first at row 256, column 0: 1e\+300; "
     r"float32 holds magnitudes up to 3.403e\+38\): they overflow float32"),
    (_build, lambda x, c: (x[:, :1],), {}, r"the flow has event_dim=2 but x has 1 columns"),
    # a label a ClassEmbedding does not know: "Training diverged ... lower the learning
    # rate", and in validation data a silent val_loss of nan
    (_LABELLED, lambda x, c: (x, np.where(np.arange(256)[:, None] == 3, 5.0, c)), {},
     r"context: labels for ClassEmbedding\(num_classes=3\) are 0..2; received 5.0 in row 3"),
    (_LABELLED, lambda x, c: (x, c), {"validation_data": (np.zeros((2, 2)), [[0.0], [-1.0]])},
     r"validation_data's context: labels for ClassEmbedding\(num_classes=3\) are 0..2; "
     r"received -1.0 in row 1"),
], ids=["context NaN", "validation width", "validation NaN", "validation context rows",
        "validation without context", "x 1-D", "x beyond float32", "x width", "label",
        "validation label"])
def test_bad_inputs_are_refused_up_front_naming_the_check(monkeypatch, build, args, kwargs,
                                                          says):
    def no_training(*a, **k):
        raise AssertionError("an epoch started")
    monkeypatch.setattr(kerasflows.distributed, "_run_epoch", no_training)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 2)).astype(np.float32)
    c = (rng.integers(0, 3, size=(256, 1)) if build is _LABELLED
         else rng.normal(size=(256, 1))).astype(np.float32)
    with pytest.raises(ValueError, match=f"^train_flow: {says}"):
        train_flow(build, *args(x, c), epochs=2, batch_size=64, verbose=0, **kwargs)


def test_a_resumed_run_adding_validation_data_has_nan_val_loss_before_it(tmp_path):
    """The checkpoint's history had no val_loss list: the resumed run raised
    KeyError('val_loss') after training its first epoch, which was lost."""
    x = kerasflows.datasets.load("moons", n=256, seed=0)
    run = dict(batch_size=64, checkpoint_dir=tmp_path / "ck", verbose=0)
    _, first = train_flow(_build, x, epochs=2, **run)
    assert "val_loss" not in first
    flow, history = train_flow(_build, x, epochs=4, validation_data=x[:50], **run)
    assert history["loss"][:2] == first["loss"] and len(history["loss"]) == 4
    assert np.isnan(history["val_loss"][:2]).all()
    assert history["val_loss"][3] == pytest.approx(
        -flow.log_prob(x[:50]).numpy().mean(), rel=1e-5)
    # and one going on without it: NaN for its epochs, so val_loss lines up with loss
    _, longer = train_flow(_build, x, epochs=5, **run)
    assert longer["val_loss"][2:4] == history["val_loss"][2:]
    assert len(longer["val_loss"]) == 5 and np.isnan(longer["val_loss"][4])


def test_train_flow_refuses_another_models_checkpoint_of_the_same_shapes(tmp_path):
    """A MAF's checkpoint was resumed by an IAF (its weights have the same shapes): the
    default fingerprint held the data and settings, but nothing of the model."""
    x = kerasflows.datasets.load("moons", n=256, seed=0)
    run = dict(batch_size=64, checkpoint_dir=tmp_path / "ck", verbose=0)
    train_flow(lambda: models.MAF(event_dim=2, num_layers=2, hidden_units=(8,)), x, epochs=1,
               **run)
    iaf = models.IAF(event_dim=2, num_layers=2, hidden_units=(8,))
    before = [w.copy() for w in iaf.get_weights()]
    with pytest.raises(ValueError, match=(
            rf"The checkpoint in {tmp_path / 'ck'} does not fit this model "
            r'\(its config.layers\[0\].class_name is "MaskedAutoregressive" where this '
            r'model\'s is "InverseAutoregressive"\): it is the training state of another '
            r'model, or was written by an older kerasflows; delete .*checkpoint.npz to start '
            r'afresh, or use another checkpoint folder\.')):
        train_flow(lambda: iaf, x, epochs=2, **run)
    for a, b in zip(iaf.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    # the same model, built again (Keras numbers its layer names afresh), resumes
    _, history = train_flow(lambda: models.MAF(event_dim=2, num_layers=2, hidden_units=(8,)),
                            x, epochs=2, **run)
    assert len(history["loss"]) == 2


def _free_ports(k):
    sockets = [socket.socket() for _ in range(k)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _train_arguments(tmp_path, name, strategy):
    return ["train", str(tmp_path / "data.npy"),
            "--recipe", "realnvp", "--layers", "2", "--hidden", "16", "--epochs", "3",
            "--batch-size", "64", "--lr", "5e-3", "--seed", "4", "--test-split", "0",
            "--strategy", strategy, "--out", str(tmp_path / f"{name}.keras"), "--quiet",
            # without the data-end ActNorm (a data file's default; under MirroredStrategy in
            # test_conditional_loop_matches_fit_and_the_mirrored_strategy): with it, Adam
            # carried the all-reduce's other summation order to 2e-5-8e-5 in the weights
            # nearest zero, which differed from run to run
            "--no-standardize"]


def _train(tmp_path, name, strategy, env_extra):
    argv = [sys.executable, "-m", "kerasflows.cli", *_train_arguments(tmp_path, name, strategy)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env_extra}
    return subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_workers_train_one_model_matching_a_single_process(tmp_path):
    np.save(tmp_path / "data.npy", kerasflows.datasets.load("pinwheel", n=1000, seed=2))
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = [_train(tmp_path, f"worker{i}", "multiworker",
                    {"TF_CONFIG": json.dumps({"cluster": cluster,
                                              "task": {"type": "worker", "index": i}})})
             for i in range(2)]
    # the single-process run in this process, while the workers train
    assert main(_train_arguments(tmp_path, "single", "default")) == 0
    for proc in procs:
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-3000:]
    w0, w1, single = (kerasflows.load(tmp_path / f"{n}.keras").get_weights()
                      for n in ("worker0", "worker1", "single"))
    for a, b, c in zip(w0, w1, single):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-3, atol=1e-5)
    chief = json.loads((tmp_path / "worker0.json").read_text())
    alone = json.loads((tmp_path / "single.json").read_text())
    assert not (tmp_path / "worker1.json").exists()
    assert chief["strategy"] == "multiworker"
    np.testing.assert_allclose(chief["history"]["loss"], alone["history"]["loss"], rtol=1e-4)
    np.testing.assert_allclose(chief["history"]["val_loss"], alone["history"]["val_loss"],
                               rtol=1e-4)
    assert chief["history"]["loss"][-1] < chief["history"]["loss"][0]


def test_mirrored_strategy_gives_the_default_result():
    x = kerasflows.datasets.load("rings", n=256, seed=0)
    kwargs = dict(epochs=2, batch_size=64, learning_rate=1e-2, seed=1, verbose=0,
                  jit_compile=False)
    alone, _ = train_flow(_build, x, **kwargs)
    mirrored, history = train_flow(_build, x, strategy=get_strategy("mirrored"), **kwargs)
    for a, b in zip(alone.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert len(history["loss"]) == 2 and "val_loss" not in history


def test_data_outside_the_data_end_layers_domain_is_refused_before_training():
    # one 0.0 under a last Sigmoid turned every weight NaN, as in Flow.fit
    from kerasflows import layers as L
    x = np.random.default_rng(0).uniform(0.05, 0.95, size=(64, 2)).astype("float32")
    build = lambda: kerasflows.Flow([L.AffineCoupling(hidden_units=(4,)), L.Sigmoid()], 2)
    bad = x.copy()
    bad[5, 1] = 0.0
    with pytest.raises(ValueError, match=r"train_flow: x: row 5, column 1 is 0.0"):
        train_flow(build, bad, epochs=1, batch_size=32, verbose=0)
    with pytest.raises(ValueError, match=r"train_flow: validation_data: row 5, column 1"):
        train_flow(build, x, epochs=1, batch_size=32, verbose=0, validation_data=bad)
    flow, history = train_flow(build, x, epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(history["loss"]).all()


def test_train_flow_refuses_bad_arguments_before_building():
    # learning_rate=-1 trained by gradient ascent; a Flow for build_flow, a strategy name
    # or a non-callable on_epoch_end failed with deep errors
    x = np.random.default_rng(0).normal(size=(64, 2)).astype("float32")
    built = []

    def build():
        built.append(1)
        return _build()

    for lr in (-1, 0, float("nan"), "1e-3", True, None):
        with pytest.raises(ValueError, match=r"`learning_rate` must be a finite number > 0"):
            train_flow(build, x, epochs=1, batch_size=32, verbose=0, learning_rate=lr)
    with pytest.raises(TypeError, match=r"`build_flow` must be a function of no arguments "
                                        r"returning a kerasflows.Flow.*Received: build_flow=<"):
        train_flow(_build(), x, epochs=1, batch_size=32, verbose=0)
    # one that forgets `return`: "'NoneType' object has no attribute 'event_dim'"
    with pytest.raises(TypeError, match=r"train_flow: build_flow\(\) returned None; expected a "
                                        r"kerasflows.Flow \(does it end in `return`\?\)"):
        train_flow(lambda: None, x, epochs=1, batch_size=32, verbose=0)
    with pytest.raises(TypeError, match=r"`strategy` must be a tf.distribute.Strategy or None.*"
                                        r"Received: strategy='mirrored'"):
        train_flow(build, x, epochs=1, batch_size=32, verbose=0, strategy="mirrored")
    with pytest.raises(TypeError, match=r"`on_epoch_end` must be callable.*"
                                        r"Received: on_epoch_end='save'"):
        train_flow(build, x, epochs=1, batch_size=32, verbose=0, on_epoch_end="save")
    assert not built


def test_a_saved_jit_compile_auto_is_resolved_again_where_the_flow_loads(tmp_path):
    # the resolved "auto" (XLA on one CPU) was saved: loaded in a MirroredStrategy's
    # scope the flow kept XLA, and on two devices its fit failed ("Trying to access
    # resource ... located in device CPU:1 from device CPU:0")
    import tensorflow as tf
    flow = _build()
    flow.compile(optimizer="adam")
    assert flow.jit_compile is True and flow.get_compile_config()["jit_compile"] == "auto"
    flow.save(tmp_path / "auto.keras")
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        loaded = keras.models.load_model(tmp_path / "auto.keras")
    assert loaded.jit_compile is False
    assert keras.models.load_model(tmp_path / "auto.keras").jit_compile is True
    for jit_compile in (True, False):
        flow.compile(optimizer="adam", jit_compile=jit_compile)
        assert flow.get_compile_config()["jit_compile"] is jit_compile


def test_evaluate_nll_keeps_no_flow_alive():
    """Its cache of traced functions, keyed weakly by flow, held each flow through the
    bound `flow.log_prob` it traced: a sweep kept every flow it evaluated."""
    import gc
    import weakref
    x = kerasflows.datasets.load("moons", n=64, seed=0)
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,))
    mean, se = kerasflows.distributed.evaluate_nll(flow, x, batch_size=16)
    assert mean == pytest.approx(-float(np.mean(flow.log_prob(x))), rel=1e-5) and se > 0
    assert kerasflows.distributed.evaluate_nll(flow, x)[0] == pytest.approx(mean, rel=1e-6)
    ref = weakref.ref(flow)
    del flow
    gc.collect()
    assert ref() is None


def test_train_flow_takes_any_positive_learning_rate_and_checks_seed_up_front():
    # learning_rate=1 or np.float32(1e-3) passed the check, then Keras' Adam refused it
    # after build_flow ran; seed=np.int64(3) failed in set_random_seed, and -1 or 2**32
    # with NumPy's message, after every other check
    x = np.random.default_rng(0).normal(size=(64, 2)).astype("float32")
    built = []

    def build():
        built.append(1)
        return models.MAF(2, num_layers=1, hidden_units=(4,))

    for lr in (1, np.float32(1e-3), np.int64(1)):
        flow, history = train_flow(build, x, epochs=1, batch_size=32, verbose=0,
                                   learning_rate=lr, jit_compile=False)
        assert len(history["loss"]) == 1
    flow, _ = train_flow(build, x, epochs=1, batch_size=32, verbose=0, seed=np.int64(3),
                         jit_compile=False)
    again, _ = train_flow(build, x, epochs=1, batch_size=32, verbose=0, seed=3,
                          jit_compile=False)
    for a, b in zip(flow.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    del built[:]
    for seed in (-1, 2**32, 1.5, "3", True, None):
        with pytest.raises(ValueError, match=r"train_flow: `seed` must be an integer in "
                                             r"\[0, 2\*\*32\)"):
            train_flow(build, x, epochs=1, batch_size=32, verbose=0, seed=seed)
    assert not built


def test_evaluate_nll_scores_a_float64_flow_in_float64():
    # the data and context were rounded to float32 first: a float64 flow with density
    # N(1e6, 0.01^2) per column scored -7.32 where its log_prob gave -6.38
    from kerasflows import layers
    flow = kerasflows.Flow([layers.ElementwiseAffine(dtype="float64")], 2, dtype="float64")
    flow.log_prob(np.zeros((1, 2)))
    flow.layers[0].shift.assign([1e6, 1e6])
    flow.layers[0].log_scale.assign(np.log([0.01, 0.01]))
    x = 1e6 + 0.01 * np.random.default_rng(0).normal(size=(500, 2))
    mean, _ = kerasflows.distributed.evaluate_nll(flow, x, batch_size=128)
    assert mean == pytest.approx(-float(np.mean(flow.log_prob(x))), rel=1e-9)
    context = np.random.default_rng(1).normal(size=(500, 1))
    conditional = models.MAF(2, num_layers=1, hidden_units=(4,), context_dim=1, dtype="float64")
    mean, _ = kerasflows.distributed.evaluate_nll(conditional, x - 1e6, context + 1e6)
    assert mean == pytest.approx(
        -float(np.mean(conditional.log_prob(x - 1e6, context=context + 1e6))), rel=1e-9)


def test_evaluate_nll_refuses_bad_shapes_and_batch_sizes_naming_them():
    """They failed inside the traced function ("Can not cast TensorSpec"), in range()
    or np.concatenate, or named the shape of the context's first row."""
    from kerasflows.distributed import evaluate_nll
    flow = models.MAF(2, num_layers=1, hidden_units=(4,), context_dim=1)
    x, c = np.zeros((50, 2)), np.zeros((50, 1))
    for bad_x in (np.zeros((50, 3)), np.zeros(50)):
        with pytest.raises(ValueError, match=r"x must have shape \(N, 2\) for this flow; "
                                             r"received shape " + re.escape(str(bad_x.shape))):
            evaluate_nll(flow, bad_x, c)
    for bad_c in (np.zeros((50, 2)), np.zeros(50)):
        with pytest.raises(ValueError, match=r"context must have shape \(N, 1\), one row per "
                                             r"example; received shape \(50,"):
            evaluate_nll(flow, x, bad_c)
    for size in (0, -1, 2.5):
        with pytest.raises(ValueError, match=r"`batch_size` must be an integer >= 1"):
            evaluate_nll(flow, x, c, batch_size=size)
    assert np.isfinite(evaluate_nll(flow, x, c, batch_size=7)[0])


def test_train_flow_shows_each_epochs_mean_loss(capsys):
    """The epoch's line showed the last batch's loss when there was no validation data
    (Keras' Progbar shows a finalizing update's value as it is)."""
    x = kerasflows.datasets.load("moons", n=512, seed=1)
    _, history = train_flow(_build, x, epochs=2, batch_size=128, learning_rate=1e-2, seed=3,
                            verbose=2, jit_compile=False)
    shown = [float(v) for v in re.findall(r"loss: ([-\d.]+)", capsys.readouterr().out)]
    assert shown == pytest.approx(history["loss"], abs=1e-4)


def test_an_off_scale_row_is_named_at_its_step_and_never_checkpointed(tmp_path):
    # one row at (1e12, -1e12): its batch's loss was finite (~1e21) but its gradient
    # overflowed Adam's second moment to inf; the epoch's checkpoint was written with
    # the inf moments, and the loss turned NaN an epoch later, "lower the learning rate"
    # even at 1e-7
    from kerasflows.checkpoint import EpochCheckpoint
    x = kerasflows.datasets.load("moons", n=512, seed=0)
    x[7] = [1e12, -1e12]
    step = int(np.argmax(epoch_order(len(x), 0, 0) == 7)) // 128 + 1
    with pytest.raises(FloatingPointError, match=rf"at epoch 1, step {step}\b.*extreme or "
                                                 r"off-scale rows.*learning rate"):
        train_flow(_build, x, epochs=3, batch_size=128, learning_rate=1e-7, verbose=0,
                   checkpoint_dir=str(tmp_path))
    assert not os.path.exists(tmp_path / EpochCheckpoint.FILENAME)


def test_an_epoch_whose_state_is_not_finite_is_never_checkpointed(tmp_path, monkeypatch):
    # a state that went non-finite without a step's loss or gradient saying so (a
    # layer's own statistics) was written to the checkpoint, which resumed into NaN
    from kerasflows.checkpoint import EpochCheckpoint
    x = kerasflows.datasets.load("moons", n=256, seed=0)
    real = kerasflows.distributed._run_epoch

    def poisoning(step, data, steps, epoch, *args, **kwargs):
        result = real(step, data, steps, epoch, *args, **kwargs)
        if epoch == 1:
            built[0].layers[0].weights[0].assign(
                np.full(built[0].layers[0].weights[0].shape, np.inf))
        return result

    built = []

    def build():
        built.append(_build())
        return built[-1]

    monkeypatch.setattr(kerasflows.distributed, "_run_epoch", poisoning)
    with pytest.raises(FloatingPointError, match=r"1 of the model's and optimizer's arrays "
                                                 r"are not finite after epoch 2 \(.+\)"):
        train_flow(build, x, epochs=3, batch_size=64, verbose=0, checkpoint_dir=str(tmp_path),
                   jit_compile=False)
    with np.load(tmp_path / EpochCheckpoint.FILENAME) as saved:
        assert json.loads(str(saved["meta"]))["epoch"] == 1
        assert all(np.isfinite(saved[k]).all() for k in saved.files if k != "meta")
