"""Variational fitting: reverse-KL training to targets, diagnostics and bad targets."""

import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import kerasflows
from kerasflows import models
from kerasflows.layers import Planar
from kerasflows import targets
from kerasflows.variational import (VariationalFlow, check_target, diagnostics, fit_target,
                                    kish_ess)


class _Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs, self.batches = [], 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(dict(logs))


def test_kish_ess():
    assert float(kish_ess(tf.zeros([10]))) == pytest.approx(1.0)
    assert float(kish_ess(tf.constant([0.0, -1e4, -1e4, -1e4]))) == pytest.approx(0.25)
    w = np.array([1.0, 2.0, 3.0])
    expected = w.sum() ** 2 / (3 * (w ** 2).sum())
    assert float(kish_ess(tf.constant(np.log(w)))) == pytest.approx(expected)


def test_fit_to_gaussian_mixture_reaches_known_log_z():
    keras.utils.set_random_seed(0)
    flow = models.RealNVP(2, num_layers=6, hidden_units=(32, 32))
    record = _Record()
    history = fit_target(flow, "gaussian_mixture", epochs=3, steps_per_epoch=100,
                         batch_size=512, learning_rate=3e-3, callbacks=[record], verbose=0)
    assert record.batches == 300 and set(record.epochs[-1]) >= {"loss", "ess"}
    assert history.history["loss"][-1] < history.history["loss"][0]
    d = diagnostics(flow, "gaussian_mixture", n=40_000)
    log_z = kerasflows.targets.get("gaussian_mixture").log_z
    print(f"gaussian_mixture: reverse KL {d['reverse_kl']:.4f} nats, ELBO {d['elbo']:.4f} "
          f"+- {d['elbo_se']:.4f}, log Z {log_z:.4f}, ESS {d['ess']:.3f}")
    assert d["log_z"] == log_z
    assert abs(d["reverse_kl"]) < 0.05
    assert d["elbo"] < log_z
    assert d["log_z_is"] == pytest.approx(log_z, abs=0.02)


def test_planar_32_fit_to_u1_reaches_ess_above_30_percent():
    keras.utils.set_random_seed(0)
    flow = kerasflows.Flow([Planar() for _ in range(32)], event_dim=2)
    vi = VariationalFlow(flow, "u1", batch_size=512)
    vi.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = vi.fit(epochs=3, steps_per_epoch=150, verbose=0)
    d = vi.diagnostics(n=40_000)
    print(f"u1, 32 planar layers: ESS {d['ess']:.3f}, reverse KL {d['reverse_kl']:.4f} nats, "
          f"last-epoch mean batch ESS {history.history['ess'][-1]:.3f}")
    assert d["ess"] > 0.30
    assert d["elbo"] < d["log_z"]


def _flow():
    return kerasflows.Flow([Planar(), Planar()], event_dim=2)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_first_fit_traces_the_step_once_and_xla_compiles(jit_compile):
    """The optimizer is built before the step's first trace (a trace that makes
    Adam's slots made TensorFlow trace the step twice), and the step runs as one
    flat call; under XLA the base noise took an int64 seed, which XLA refused."""
    keras.utils.set_random_seed(0)
    vi = VariationalFlow(_flow(), "u1", batch_size=64)
    vi.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=jit_compile)
    history = vi.fit(epochs=2, steps_per_epoch=20, verbose=0)
    assert vi.optimizer.built and vi.train_function.traces == 1
    assert history.history["loss"][-1] < history.history["loss"][0]
    # Keras' own loop where the flat calls do not apply
    vi.compile(optimizer=keras.optimizers.Adam(1e-2), steps_per_execution=2,
               jit_compile=jit_compile)
    vi.fit(epochs=1, steps_per_epoch=4, verbose=0)
    assert not isinstance(vi.train_function, kerasflows.training.FlatStepCalls)


@pytest.mark.parametrize("target, match", [
    (lambda x: tf.math.log(x[:, 0]), r"non-finite values \(NaN or inf\)"),
    (lambda x: x[:, 0] * np.nan, r"non-finite"),
    (lambda x: -tf.reduce_sum(x * x, -1, keepdims=True), r"shape \(64, 1\).*expected \(64,\)"),
    (lambda x: -x * x, r"shape \(64, 2\)"),
    (lambda x: -tf.reduce_sum(x * x), r"shape \(\)"),
    (lambda x: -0.5 * (np.asarray(x) ** 2).sum(1),            # works on values only
     r"log_density works on values but not inside the train step.*TensorFlow ops"),
])
def test_bad_target_errors_on_first_step(target, match):
    record = _Record()
    vi = VariationalFlow(_flow(), target, batch_size=64)
    vi.compile(optimizer="adam")
    with pytest.raises(ValueError, match=match):
        vi.fit(epochs=1, steps_per_epoch=5, callbacks=[record], verbose=0)
    assert record.batches == 0


def test_a_plain_adam_is_updated_by_the_fused_kernel_as_keras_would(fused_adam_ops):
    runs = {}
    for fused in (True, False):
        keras.utils.set_random_seed(0)
        vi = VariationalFlow(_flow(), "u1", batch_size=64)
        vi.fused_adam = fused
        vi.compile(optimizer=keras.optimizers.Adam(1e-2))
        history = vi.fit(epochs=2, steps_per_epoch=5, verbose=0)
        assert bool(fused_adam_ops) == fused and int(vi.optimizer.iterations.numpy()) == 10
        fused_adam_ops.clear()
        runs[fused] = history.history["loss"], vi.flow.get_weights()
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-5)
    for a, b in zip(runs[True][1], runs[False][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_the_target_check_draws_the_flows_samples_without_tracing_them():
    """`fit` checks the target on a first batch op by op: tracing the sampler for
    that one call (a graph the flow then kept) cost more than the call."""
    flow = _flow()
    kerasflows.testing.perturb_weights(flow, 0.5)
    x, log_p = check_target(flow, "u1", n=64, seed=3)
    assert not flow._compiled                       # no function traced for it
    np.testing.assert_allclose(x, flow.sample(64, seed=3), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(log_p, targets.get("u1")(x), rtol=1e-6)
    with pytest.raises(ValueError, match=r"non-finite values"):
        check_target(flow, lambda x: tf.math.log(x[:, 0]), n=64)


def test_bad_arguments():
    with pytest.raises(ValueError, match="name='nope'"):
        VariationalFlow(_flow(), "nope")
    with pytest.raises(TypeError, match="log_density"):
        VariationalFlow(_flow(), 3.0)
    with pytest.raises(ValueError, match="event_dim=3"):
        VariationalFlow(kerasflows.Flow([Planar()], event_dim=3), "u1")
    with pytest.raises(ValueError, match="batch_size"):
        VariationalFlow(_flow(), "u1", batch_size=0)
    with pytest.raises(TypeError, match="kerasflows.Flow"):
        VariationalFlow(keras.Sequential(), "u1")
    vi = VariationalFlow(_flow(), "u1")
    vi.compile(optimizer="adam")
    with pytest.raises(ValueError, match="takes no `x`"):
        vi.fit(x=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="takes no data; its first argument is `epochs`"):
        vi.fit(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="epochs=0"):
        vi.fit(0)
    with pytest.raises(NotImplementedError, match=r"no data to evaluate on; vi.diagnostics"):
        vi.evaluate(steps=2)
    with pytest.raises(NotImplementedError, match=r"vi.flow.sample\(n\)"):
        vi.predict(np.zeros((4, 2)))
    for rate in (-1.0, 0, float("nan"), "fast"):
        with pytest.raises(ValueError, match="learning_rate"):
            fit_target(_flow(), "u1", learning_rate=rate)
    # a learning rate beside an optimizer was ignored
    with pytest.raises(ValueError, match=r"`optimizer` with its own; received both "
                                         r"\(learning_rate=-3\)"):
        fit_target(_flow(), "u1", learning_rate=-3, optimizer=keras.optimizers.SGD(0.1))
    # a TFP distribution (no __call__): its log_prob is the target
    normal = tfp.distributions.MultivariateNormalDiag(tf.zeros(2))
    with pytest.raises(TypeError, match=r"a TFP distribution: pass its `log_prob`"):
        VariationalFlow(_flow(), normal)
    assert VariationalFlow(_flow(), normal.log_prob).log_density == normal.log_prob
    # a float64 flow's samples and a float32 target: the message says x's dtype
    flow64 = kerasflows.Flow([Planar(dtype="float64")], event_dim=2, dtype="float64")
    with pytest.raises(ValueError, match=r"log_density failed on a float64 batch of shape "
                                         r"\(8, 2\) \(the flow's dtype\)"):
        check_target(flow64, lambda x: tf.reduce_sum(x * tf.ones(2, "float32"), -1), n=8)
    assert float(kish_ess(tf.constant([0, 0, 0]))) == pytest.approx(1.0)


def test_diagnostics_of_an_exact_flow():
    """A flow equal to the target (standard normal) has ESS 1 and zero KL."""
    flow = _flow()  # planar layers start at the identity: q = N(0, I)
    normal = lambda x: -0.5 * tf.reduce_sum(x * x, -1) - math.log(2 * math.pi)
    d = diagnostics(flow, normal, n=1000)
    assert d["ess"] == pytest.approx(1.0, abs=1e-6)
    assert d["elbo"] == pytest.approx(0.0, abs=1e-5) and d["log_z_is"] == pytest.approx(0.0, abs=1e-5)
    assert "reverse_kl" not in d
    # a target -inf beyond x0 = 1.5: the ELBO is -inf and its s.e. inf (it was NaN, after
    # NumPy's "invalid value" warning)
    cut = lambda x: tf.where(x[:, 0] > 1.5, -np.inf, normal(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = diagnostics(flow, cut, n=1000)
    assert d["elbo"] == -np.inf and d["elbo_se"] == np.inf and 0 < d["ess"] < 1
    # the standard error of one sample is not known (it said 0.0)
    assert math.isnan(diagnostics(_flow(), "u1", n=1)["elbo_se"])
    shifted = lambda x: normal(x - 0.5)
    lw = np.asarray(shifted(flow.sample(1000, seed=0))) - np.asarray(
        flow.sample_and_log_prob(1000, seed=0)[1])
    d = diagnostics(flow, shifted, n=1000)
    assert d["elbo_se"] == pytest.approx(lw.std(ddof=1) / math.sqrt(1000), rel=1e-5)
    # log_z_is's standard error: of the mean weight, over that mean (the delta method)
    w = np.exp(lw)
    assert d["log_z_is_se"] == pytest.approx(w.std(ddof=1) / math.sqrt(1000) / w.mean(),
                                             rel=1e-4)
    assert diagnostics(flow, normal, n=1000)["log_z_is_se"] == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(diagnostics(_flow(), "u1", n=1)["log_z_is_se"])
    assert diagnostics(flow, lambda x: normal(x) + np.inf, n=10)["log_z_is_se"] == np.inf


def test_fit_target_command(tmp_path, capsys):
    from kerasflows.cli import main
    out = tmp_path / "mix.keras"
    status = main(["fit-target", "--target", "gaussian_mixture", "--recipe", "planar",
                   "--layers", "4", "--epochs", "1", "--steps", "30", "--batch-size", "128",
                   "--eval-samples", "2000", "--out", str(out), "--quiet"])
    assert status == 0
    assert "ESS" in capsys.readouterr().out
    import json
    report = json.loads((tmp_path / "mix.json").read_text())
    assert report["target"] == "gaussian_mixture" and report["num_layers"] == 4
    assert report["elbo"] < report["log_z"] and 0 < report["ess"] <= 1
    flow = kerasflows.load(str(out))
    assert [type(l) for l in flow.flow_layers] == [Planar] * 4
    assert kerasflows.loading.training_record(str(out))["reverse_kl"] == report["reverse_kl"]


def test_fit_target_command_model_dir(tmp_path, capsys):
    import json
    from kerasflows.cli import main
    folder = tmp_path / "banana_realnvp"
    status = main(["fit-target", "--target", "banana", "--recipe", "realnvp", "--layers", "2",
                   "--hidden", "8", "--epochs", "1", "--steps", "10", "--batch-size", "64",
                   "--eval-samples", "500", "--model-dir", str(folder), "--quiet"])
    assert status == 0
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["name"] == "banana_realnvp" and manifest["dataset"] is None
    assert manifest["target"] == "banana" and manifest["forward_only"] is False
    assert (folder / "saved_model" / "1" / "saved_model.pb").exists()
    served = tf.saved_model.load(str(folder / "saved_model" / "1"))
    x = np.zeros((3, 2), np.float32)
    np.testing.assert_allclose(served.signatures["serving_default"](x=x)["log_prob"].numpy(),
                               kerasflows.load(str(folder)).log_prob(x).numpy(), atol=1e-5)
    # info says the fit, not "dataset None, test NLL None, true entropy None"
    assert main(["info", str(folder)]) == 0
    said = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("manifest: ")]
    assert said == [f"manifest: target banana, ELBO {manifest['elbo']:.4f}, log Z "
                    f"{manifest['log_z']:.4f}, ESS {manifest['ess']:.3f}"], said


def test_fit_target_command_errors(capsys, tmp_path):
    from kerasflows.cli import main
    # refused before its folder is made (an empty new/sub was left)
    with pytest.raises(SystemExit):
        main(["fit-target", "--target", "u1", "--recipe", "planar", "--hidden", "8",
              "--model-dir", str(tmp_path / "new" / "sub")])
    assert "--hidden does not apply to planar layers" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["fit-target", "--target", "u1", "--recipe", "planar", "--bins", "4"])
    assert exit_info.value.code == 2
    assert ("kerasflows: error: --bins does not apply to planar layers, which have no "
            "conditioner" in capsys.readouterr().err)
    with pytest.raises(SystemExit):
        main(["fit-target", "--target", "u1", "--recipe", "radial", "--direction", "forward"])
    assert "--direction does not apply to radial layers" in capsys.readouterr().err
    with pytest.raises(SystemExit):         # --hidden was taken, and ignored
        main(["fit-target", "--target", "u1", "--recipe", "planar", "--hidden", "8,8"])
    assert "--hidden does not apply to planar layers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit-target", "--target", "u1", "--recipe", "planar", "--bins", "4", "--bound",
              "3"])
    assert "--bins/--bound do not apply to planar layers" in capsys.readouterr().err


def test_training_draws_a_fresh_hutchinson_probe_as_fit_does(monkeypatch):
    """The train step runs the layers in training mode: FFJORD's Hutchinson probe is
    fresh at every step (README), fixed outside training."""
    from kerasflows.layers import ContinuousFlow
    keras.utils.set_random_seed(0)
    flow = kerasflows.Flow([ContinuousFlow(hidden_units=(8,), trace="hutchinson")], event_dim=2)
    kerasflows.testing.perturb_weights(flow, 0.5)
    _, fixed_a = flow.sample_and_log_prob(64, seed=1)
    _, fixed_b = flow.sample_and_log_prob(64, seed=1)
    np.testing.assert_array_equal(fixed_a, fixed_b)
    x_a, fresh_a = flow.sample_and_log_prob(64, seed=1, training=True)
    x_b, fresh_b = flow.sample_and_log_prob(64, seed=1, training=True)
    np.testing.assert_allclose(x_a, x_b, atol=1e-3)     # the same samples (to the solver),
    assert np.abs(fresh_a.numpy() - fresh_b.numpy()).max() > 1e-3  # other trace estimates
    seen = []
    bijector = ContinuousFlow.bijector

    def spy(self, context=None, training=False):
        seen.append(training)
        return bijector(self, context=context, training=training)
    monkeypatch.setattr(ContinuousFlow, "bijector", spy)
    vi = VariationalFlow(flow, "u1", batch_size=32)
    vi.compile(optimizer="adam")
    seen.clear()
    vi.fit(epochs=1, steps_per_epoch=2, verbose=0)
    assert True in seen and set(seen) <= {True, False}
    assert seen[-1] is True          # the step's trace, after the target check's call


@pytest.mark.parametrize("target", [
    lambda x: tf.numpy_function(lambda a: -0.5 * (a * a).sum(1), [x], x.dtype),
    lambda x: tf.cast(tf.cast(-10.0 * tf.reduce_sum(x * x, 1), "int32"), x.dtype),
], ids=["numpy_function", "cast_to_int"])
def test_a_target_no_gradient_flows_through_stops_the_fit(target):
    """Such a target passed every check and the fit then ignored it (no gradient
    reached the samples through it: the flow only maximised its entropy)."""
    record = _Record()
    vi = VariationalFlow(_flow(), target, batch_size=64)
    vi.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"no gradient flows through log_density.*TensorFlow ops"):
        vi.fit(epochs=1, steps_per_epoch=5, callbacks=[record], verbose=0)
    assert record.batches == 0


def test_a_target_of_finite_values_but_a_nan_gradient_stops_the_fit():
    """`tf.where` over a branch NaN off its mask gives finite values and a NaN gradient:
    every check passed and the first step made every weight NaN."""
    def target(x):
        inside = x[:, 0] > 0
        return tf.where(inside, tf.math.log(tf.sqrt(x[:, 0])) - 0.5 * x[:, 1] ** 2, -50.0)
    record = _Record()
    vi = VariationalFlow(_flow(), target, batch_size=64)
    vi.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"log_density's gradient with respect to x is NaN "
                                         r"or inf in \d+ of 64 rows .*tf.where"):
        vi.fit(epochs=1, steps_per_epoch=5, callbacks=[record], verbose=0)
    assert record.batches == 0
    assert all(np.isfinite(w.numpy()).all() for w in vi.flow.weights)


class _Energy(keras.layers.Layer):
    """A target written as a Keras layer of one weight (a trained energy network)."""

    def build(self, input_shape):
        self.precision = self.add_weight(shape=(), initializer=keras.initializers.Constant(1.0),
                                         name="precision")

    def call(self, x):
        return -0.5 * self.precision * tf.reduce_sum(x ** 2, -1)


def test_a_keras_layer_target_is_not_trained_with_the_flow():
    """Set as an attribute of the VariationalFlow (a Keras model), a Keras target's weights
    joined its trainable variables: the fit drove the target's precision negative and
    the loss to -8.6e8."""
    energy, flow = _Energy(name="energy"), _flow()
    energy(tf.zeros([1, 2]))
    vi = VariationalFlow(flow, energy, batch_size=64)
    assert vi.log_density is energy
    assert {id(v) for v in vi.trainable_variables} == {id(v) for v in flow.trainable_variables}
    vi.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = vi.fit(epochs=2, steps_per_epoch=20, verbose=0).history
    assert float(energy.precision) == 1.0 and np.isfinite(history["loss"]).all()


def test_a_variational_fit_initialises_actnorm_so_a_later_flow_fit_keeps_it():
    """ActNorm stayed uninitialised after a variational fit, and a later `Flow.fit`
    (here with learning rate 0) initialised it over the trained weights."""
    from kerasflows.layers import ActNorm

    def fitted(seed):
        keras.utils.set_random_seed(seed)
        flow = models.Glow(2, num_layers=2, hidden_units=[8])
        fit_target(flow, "banana", epochs=1, steps_per_epoch=20, batch_size=128,
                   learning_rate=1e-2, verbose=0)
        return flow
    flow = fitted(0)
    acts = [l for l in flow.flow_layers if isinstance(l, ActNorm)]
    assert acts and all(a.is_data_initialized() for a in acts)
    before = [w.numpy().copy() for w in flow.weights]
    for w, b in zip(fitted(0).weights, before):      # the seed still fixes the fit
        np.testing.assert_allclose(w.numpy(), b)
    x = flow.sample(256, seed=5)
    flow.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))
    flow.fit(x, epochs=1, batch_size=128, verbose=0)
    for w, b in zip(flow.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)
    mixed = kerasflows.Flow([Planar(), ActNorm(), Planar()], event_dim=2)  # forward-only
    fit_target(mixed, "u1", epochs=1, steps_per_epoch=2, batch_size=32, verbose=0)
    assert mixed.flow_layers[1].is_data_initialized()
    # near the identity whatever the batch: on 2 samples the log-scales were -1.7
    small = models.Glow(2, num_layers=2, hidden_units=[8])
    fit_target(small, "banana", epochs=1, steps_per_epoch=1, batch_size=2,
               learning_rate=1e-9, verbose=0)
    for act in (l for l in small.flow_layers if isinstance(l, ActNorm)):
        assert np.abs(act.log_scale.numpy()).max() < 0.1, act.log_scale.numpy()


def test_fit_under_a_distribution_strategy_says_it_runs_on_one_device():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        vi = VariationalFlow(_flow(), "u1", batch_size=32)
        vi.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"runs on one device.*MirroredStrategy"):
        vi.fit(epochs=1, steps_per_epoch=1, verbose=0)
    vi = VariationalFlow(_flow(), "u1", batch_size=32)
    vi.compile(optimizer="adam")
    with strategy.scope(), pytest.raises(ValueError, match=r"runs on one device"):
        vi.fit(epochs=1, steps_per_epoch=1, verbose=0)


@pytest.mark.parametrize("key, value", [
    ("validation_data", np.zeros((4, 2))), ("validation_split", 0.1),
    ("validation_steps", 2), ("validation_freq", 1), ("sample_weight", [1.0]),
    ("class_weight", {0: 1.0}), ("shuffle", True), ("y", np.zeros(4)),
])
def test_fit_rejects_every_data_argument_with_its_own_message(key, value):
    vi = VariationalFlow(_flow(), "u1", batch_size=32)
    vi.compile(optimizer="adam")
    with pytest.raises(ValueError, match=rf"draws its own samples and takes no `{key}`") as info:
        vi.fit(epochs=1, steps_per_epoch=1, verbose=0, **{key: value})
    assert "batch_size" not in str(info.value)
    with pytest.raises(ValueError, match=r"takes no `batch_size`; set batch_size in the "
                       r"constructor"):
        vi.fit(epochs=1, steps_per_epoch=1, verbose=0, batch_size=8)


def test_a_whole_model_checkpoint_is_refused_before_training_and_weights_only_is_taken(tmp_path):
    """ModelCheckpoint of a .keras file failed only after the first epoch had trained
    (a VariationalFlow is not saved whole); it is refused before, weights-only works."""
    vi = VariationalFlow(_flow(), "u1", batch_size=32)
    vi.compile(optimizer="adam")
    before = [v.numpy() for v in vi.flow.trainable_variables]
    whole = keras.callbacks.ModelCheckpoint(str(tmp_path / "vi.keras"))
    # also nested in lists, which Keras flattens (it trained an epoch, then failed)
    for given in ([whole], [[whole]]):
        with pytest.raises(ValueError, match=r"save_weights_only=True.*filepath='.*vi\.keras'"):
            vi.fit(epochs=1, steps_per_epoch=2, verbose=0, callbacks=given)
    for a, b in zip(vi.flow.trainable_variables, before):
        np.testing.assert_array_equal(a.numpy(), b)
    weights = keras.callbacks.ModelCheckpoint(str(tmp_path / "vi.weights.h5"),
                                              save_weights_only=True)
    vi.fit(epochs=1, steps_per_epoch=2, verbose=0, callbacks=weights)    # one, as Keras takes
    assert (tmp_path / "vi.weights.h5").is_file()


def test_fit_target_takes_any_positive_learning_rate():
    # an int or a NumPy float passed the check, then Keras' Adam refused it
    for rate in (1, np.float32(1e-3), np.int64(1)):
        history = fit_target(_flow(), "u1", epochs=1, steps_per_epoch=2, batch_size=16,
                             learning_rate=rate, verbose=0)
        assert len(history.history["loss"]) == 1
    with pytest.raises(ValueError, match=r"`learning_rate` must be a finite number > 0 \(or "
                                         r"a keras.optimizers.schedules.LearningRateSchedule\)\. "
                                         r"Received: learning_rate=True"):
        fit_target(_flow(), "u1", learning_rate=True)
    # a Keras schedule, as Adam takes it (it was refused as not a number)
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.5)
    flow = _flow()
    fit_target(flow, "u1", epochs=1, steps_per_epoch=2, batch_size=16, learning_rate=schedule,
               verbose=0)
