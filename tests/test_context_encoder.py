"""Conditional flows whose context goes through a `context_encoder` trained with them,
and flows used as a layer of a larger Keras model."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasflows
from kerasflows import layers as L
from kerasflows.layers.embedding import label_embedding
from kerasflows.testing import perturb_weights
from kerasflows.training import make_train_step

C = 6       # raw context width


def _data(n=4096, seed=0):
    """x [n, 2] centred at +-2 * (1, 1), the sign given by the sum of three of six
    context columns (the other three are noise)."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((n, C)).astype(np.float32)
    sign = np.sign(c[:, :3].sum(1, keepdims=True))
    x = (2.0 * sign + 0.3 * rng.standard_normal((n, 2))).astype(np.float32)
    return x, c


def _encoder(features=3, dropout=None):
    layers = [keras.layers.Dense(16, activation="relu")]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(features))
    return keras.Sequential(layers, name="encoder")


def _flow(recipe=kerasflows.models.RealNVP, features=3, **kwargs):
    return recipe(2, num_layers=2, hidden_units=(16,), context_dim=C,
                  context_encoder=_encoder(features, kwargs.pop("dropout", None)), **kwargs)


def test_recipes_condition_their_layers_on_the_encoders_features():
    for recipe in (kerasflows.models.RealNVP, kerasflows.models.MAF, kerasflows.models.NSF):
        flow = _flow(recipe, features=3)
        assert flow.context_dim == C and flow.context_features == 3
        conditional = [l.context_dim for l in flow.flow_layers if l.context_dim is not None]
        assert conditional and set(conditional) == {3}
        ids = {id(w) for w in flow.trainable_weights}
        assert all(id(w) in ids for w in flow.context_encoder.trainable_weights)


def test_the_encoder_is_trained_with_the_flow_and_the_flow_learns_p_x_given_c():
    x, c = _data()
    flow = _flow()
    before = [w.numpy().copy() for w in flow.context_encoder.weights]
    flow.compile(optimizer=keras.optimizers.Adam(3e-3))
    flow.fit((x, c), batch_size=256, epochs=12, verbose=0)
    assert max(np.abs(w.numpy() - b).max()
               for w, b in zip(flow.context_encoder.weights, before)) > 1e-2
    test_x, test_c = _data(1000, seed=1)
    nll = -flow.log_prob(test_x, context=test_c).numpy().mean()
    # the best flow that ignores c is the two-bump mixture: its NLL is at least
    # log 2 above the conditional's (1.04 nats: two N(0, 0.3^2) coordinates)
    assert nll < 1.04 + 0.4, nll
    samples = flow.sample(500, context=test_c[:1], seed=0).numpy()
    sign = np.sign(test_c[0, :3].sum())
    assert np.abs(samples.mean(0) - 2.0 * sign).max() < 0.5


def test_a_flow_with_an_encoder_saves_loads_tabulates_and_exports_with_the_raw_context(
        tmp_path):
    flow = _flow(kerasflows.models.NSF)
    perturb_weights(flow, seed=3)
    x, c = _data(64, seed=2)
    want = flow.log_prob(x, context=c).numpy()
    assert np.isfinite(want).all()
    dist = flow.get_distribution(context=c)
    np.testing.assert_allclose(dist.log_prob(x).numpy(), want, rtol=1e-4, atol=1e-4)

    flow.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    assert isinstance(loaded.context_encoder, keras.Sequential)
    np.testing.assert_allclose(loaded.log_prob(x, context=c).numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(loaded.sample(9, context=c[:1], seed=4).numpy(),
                               flow.sample(9, context=c[:1], seed=4).numpy(), rtol=1e-6)

    fast, _ = kerasflows.tabulate(flow)
    np.testing.assert_allclose(fast.log_prob(x, context=c).numpy(), want, rtol=1e-5, atol=1e-5)

    served = tf.saved_model.load(flow.export(tmp_path / "served"))
    got = served.signatures["serving_default"](x=tf.constant(x), context=tf.constant(c))
    np.testing.assert_allclose(got["log_prob"].numpy(), want, rtol=1e-5, atol=1e-5)
    drawn = served.signatures["sample"](n=tf.constant(9), seed=tf.constant(4),
                                        context=tf.constant(c[:1]))
    np.testing.assert_allclose(drawn["samples"].numpy(),
                               flow.sample(9, context=c[:1], seed=4).numpy(), rtol=1e-5,
                               atol=1e-5)


def test_the_encoder_runs_in_training_mode_only_when_the_flow_trains():
    flow = _flow(dropout=0.5)
    perturb_weights(flow, seed=1)
    x, c = _data(32)
    once, again = (flow.log_prob(x, context=c).numpy() for _ in range(2))
    np.testing.assert_array_equal(once, again)               # inference: no dropout
    a, b = (flow((x, c), training=True).numpy() for _ in range(2))
    assert np.abs(a - b).max() > 1e-4                          # training: dropout on
    # and the hand-written step trains the encoder's weights too
    step = make_train_step(flow, keras.optimizers.Adam(1e-2), jit_compile=False)
    before = [w.numpy().copy() for w in flow.context_encoder.trainable_weights]
    step(tf.constant(x), tf.constant(c))
    assert all(np.abs(w.numpy() - b).max() > 0
               for w, b in zip(flow.context_encoder.trainable_weights, before))


def test_a_float16_encoder_gets_loss_scaling():
    encoder = keras.Sequential([keras.layers.Dense(4, dtype="mixed_float16")])
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,), context_dim=C,
                                     context_encoder=encoder)
    assert flow.float16_conditioners()
    flow.compile(optimizer=keras.optimizers.Adam())
    assert isinstance(flow.optimizer, keras.optimizers.LossScaleOptimizer)
    x, c = _data(16)
    assert flow.log_prob(x, context=c).dtype == tf.float32


def test_bad_encoders_raise_naming_what_was_expected():
    with pytest.raises(ValueError, match="must be a Keras layer or model.*received function"):
        kerasflows.models.MAF(2, context_dim=C, context_encoder=lambda c: c)
    with pytest.raises(ValueError, match="give context_dim"):
        kerasflows.models.MAF(2, context_encoder=_encoder())
    with pytest.raises(ValueError, match=r"maps \(None, 6\) to \(None, 3, 2\)"):
        kerasflows.models.MAF(2, context_dim=C,
                              context_encoder=keras.layers.Reshape((3, 2)))
    layers = [L.AffineCoupling(context_dim=C, hidden_units=(8,))]
    with pytest.raises(ValueError, match="has context_dim=6 but the flow's context_encoder "
                                         "maps its context_dim=6 to 3 features"):
        kerasflows.Flow(layers, 2, context_dim=C, context_encoder=_encoder(3))
    flow = _flow()
    x, c = _data(4)
    with pytest.raises(ValueError, match=r"context"):
        flow.log_prob(x, context=c[:, :3])                    # the raw width is expected


def test_a_flow_is_a_layer_of_a_functional_model():
    """`flow(x, context=h)` on symbolic tensors: a functional model whose output is
    log p(x | h), h computed by the model's own layers."""
    flow = kerasflows.models.NSF(2, num_layers=2, hidden_units=(8,), context_dim=3)
    perturb_weights(flow, seed=2)
    x_in, c_in = keras.Input((2,)), keras.Input((C,))
    dense = keras.layers.Dense(3, activation="tanh")
    model = keras.Model([x_in, c_in], flow(x_in, context=dense(c_in)))
    assert model.output.shape == (None,)
    x, c = _data(50)
    np.testing.assert_allclose(model.predict([x, c], verbose=0),
                               flow.log_prob(x, context=dense(c)).numpy(), rtol=1e-5, atol=1e-5)


@keras.saving.register_keras_serializable("test_context_encoder")
class _Subclassed(keras.layers.Layer):
    """An encoder of sublayers and no `build`, which Keras builds by tracing `call`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.layers.Dense(3)

    def call(self, c):
        return self.inner(c)


@pytest.mark.parametrize("make", [_encoder, lambda: keras.layers.Dense(3, name="encoder"),
                                  lambda: _Subclassed(name="encoder")],
                         ids=["sequential", "dense", "subclassed"])
def test_an_encoder_shared_with_another_head_of_a_model_saves_and_loads(tmp_path, make):
    """Finding the encoder's width called it on a free symbolic input: each call a node
    of the encoder's (two for a recipe), and one more in the middle of loading a model
    in which the encoder also fed another head, whose load then failed ("Graph
    disconnected")."""
    encoder = make()
    flow = kerasflows.models.MAF(2, num_layers=1, hidden_units=(8,), context_dim=C,
                                 context_encoder=encoder)
    assert encoder.built and len(encoder._inbound_nodes) == 0
    perturb_weights(flow, seed=1)
    x_in, c_in = keras.Input((2,)), keras.Input((C,))
    model = keras.Model([x_in, c_in], [flow(x_in, context=c_in),
                                       keras.layers.Dense(1)(encoder(c_in))])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x, c = _data(20)
    for a, b in zip(model.predict([x, c], verbose=0), loaded.predict([x, c], verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    flows = [layer for layer in loaded.layers if isinstance(layer, kerasflows.Flow)]
    assert flows[0].context_encoder is loaded.get_layer("encoder")


def test_two_flows_sharing_one_encoder_save_and_load_sharing_it(tmp_path):
    """The encoder's config was a dict of the flow's own, which Keras copies: its mark
    as shared went on the copy not written, so the second flow's encoder loaded as a
    new layer with no weights ("expected 2 variables, but received 0")."""
    encoder = keras.layers.Dense(4, name="shared_encoder")
    first = kerasflows.models.MAF(2, num_layers=1, hidden_units=(8,), context_dim=C,
                                  context_encoder=encoder, name="maf")
    second = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,), context_dim=C,
                                       context_encoder=encoder, name="realnvp")
    perturb_weights(first, seed=1)
    perturb_weights(second, seed=2)
    x_in, c_in = keras.Input((2,)), keras.Input((C,))
    model = keras.Model([x_in, c_in], [first(x_in, context=c_in), second(x_in, context=c_in)])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    flows = [layer for layer in loaded.layers if isinstance(layer, kerasflows.Flow)]
    assert flows[0].context_encoder is flows[1].context_encoder
    x, c = _data(20)
    for a, b in zip(model.predict([x, c], verbose=0), loaded.predict([x, c], verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # outside saving, the config is plain data, and a flow made from it its own encoder
    config = first.get_config()
    assert isinstance(config["context_encoder"], dict)
    copy = kerasflows.Flow.from_config(config)
    assert copy.context_encoder is not encoder


def test_loading_a_flow_of_an_unregistered_encoder_names_the_class_or_takes_it(tmp_path):
    """`kerasflows.load` kept the first line of Keras' error, which blamed Flow's
    from_config; the reason (the class Keras could not locate) was lines below. And
    `load` took no `custom_objects`."""

    class LocalEncoder(keras.layers.Layer):       # not registered, not a module attribute
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = keras.layers.Dense(3)

        def call(self, c):
            return self.inner(c)

    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,), context_dim=C,
                                     context_encoder=LocalEncoder(name="local"))
    perturb_weights(flow, seed=3)
    flow.save(tmp_path / "f.keras")
    with pytest.raises(ValueError, match=r"f.keras: cannot load the model \(TypeError: Could "
                                         r"not locate class 'LocalEncoder'. Make sure custom "
                                         r"classes .* are decorated with"):
        kerasflows.load(tmp_path / "f.keras")
    loaded = kerasflows.load(tmp_path / "f.keras", custom_objects={"LocalEncoder": LocalEncoder})
    x, c = _data(10)
    np.testing.assert_allclose(loaded.log_prob(x, context=c), flow.log_prob(x, context=c),
                               rtol=1e-6)


def test_a_model_holding_a_flow_exports_after_the_flows_eager_calls(tmp_path):
    """The flow cached its eager calls' traced functions in a dict keyed by tuples,
    which TensorFlow tracked as one of its parts: after one eager `sample` or
    `log_prob` a model holding the flow could no longer be exported
    (`keras.Model.export`, `tf.saved_model.save`: "non-string key")."""
    flow = kerasflows.models.MAF(2, num_layers=2, hidden_units=(8,), context_dim=3)
    perturb_weights(flow, seed=2)
    x_in, c_in = keras.Input((2,)), keras.Input((C,))
    dense = keras.layers.Dense(3, activation="tanh")
    model = keras.Model([x_in, c_in], flow(x_in, context=dense(c_in)))
    x, c = _data(50)
    h = dense(c)
    for mode in ("graph", "xla"):
        flow.eval_mode = mode
        flow.sample(5, context=h[:1], seed=0)
        flow.sample_and_log_prob(5, context=h[:1], seed=0)
        flow.log_prob(x, context=h)
        flow.trace_inverse(x, context=h)
    assert len(flow._compiled) >= 8
    model.export(tmp_path / "served", verbose=False)
    served = tf.saved_model.load(str(tmp_path / "served"))
    np.testing.assert_allclose(served.serve([x, c]), model.predict([x, c], verbose=0),
                               rtol=1e-5, atol=1e-5)
    tf.saved_model.save(flow, str(tmp_path / "flow_alone"))


def test_class_embedding_gives_each_label_its_row():
    emb = L.ClassEmbedding(4, features=3, name="labels")
    table = emb.table.numpy()
    assert table.shape == (4, 3) and 0.3 < table.std() < 3.0      # N(0, 1) rows, not +-0.05
    got = emb(np.array([[0.0], [2.9999], [3.0], [1.2]], np.float32)).numpy()
    np.testing.assert_array_equal(got, table[[0, 3, 3, 1]])       # float labels are rounded
    np.testing.assert_array_equal(emb(np.array([2, 0], np.int32)).numpy(), table[[2, 0]])
    outside = emb(np.array([[-1.0], [4.0], [1.0]], np.float32)).numpy()
    assert np.isnan(outside[:2]).all() and np.array_equal(outside[2], table[1])
    compiled = tf.function(emb.call, jit_compile=True)(tf.constant([[5.0], [2.0]]))
    assert np.isnan(compiled[0]).all() and np.array_equal(compiled[1], table[2])
    # a NaN label (XLA cast it to label 0) and an int64 label past int32 (it wrapped
    # to 1) are unknown labels too
    for call in (emb.call, tf.function(emb.call, jit_compile=True)):
        got = call(tf.constant([[np.nan], [np.inf], [1.0]])).numpy()
        assert np.isnan(got[:2]).all() and np.array_equal(got[2], table[1])
        got = call(tf.constant([[2**32 + 1], [3]], tf.int64)).numpy()
        assert np.isnan(got[0]).all() and np.array_equal(got[1], table[3])
    again = L.ClassEmbedding.from_config(emb.get_config())
    assert (again.num_classes, again.features, again.stddev) == (4, 3, 1.0)
    with pytest.raises(ValueError, match="one label per row, shape \\(batch, 1\\); received "
                                         "shape \\(5, 2\\)"):
        L.ClassEmbedding(4)(np.zeros((5, 2), np.float32))
    for kwargs, message in [({"num_classes": 0}, "num_classes"), ({"num_classes": 3,
                            "stddev": 0.0}, "stddev` must be a finite number > 0"),
                            ({"num_classes": 3, "stddev": None}, "stddev=None"),
                            ({"num_classes": 3, "stddev": float("inf")}, "stddev=inf")]:
        with pytest.raises(ValueError, match=message):
            L.ClassEmbedding(**kwargs)


def test_a_class_conditional_flow_saves_with_its_embedding(tmp_path):
    flow = kerasflows.models.RealNVP(4, num_layers=2, hidden_units=(8,), context_dim=1,
                                     context_encoder=L.ClassEmbedding(3, 5))
    assert {l.context_dim for l in flow.flow_layers} - {None} == {5}
    perturb_weights(flow, seed=0)
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    by_label = [flow.log_prob(x, context=np.full((6, 1), k, np.float32)).numpy()
                for k in range(3)]
    assert np.abs(by_label[0] - by_label[1]).max() > 1e-3
    flow.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    assert isinstance(loaded.context_encoder, L.ClassEmbedding)
    np.testing.assert_allclose(loaded.log_prob(x, context=np.full((6, 1), 2.0)).numpy(),
                               by_label[2], rtol=1e-6)


@pytest.mark.parametrize("network", [False, True])
def test_an_unknown_label_gives_nan_in_every_mode_and_in_an_export(tmp_path, network):
    """The embedding's NaN features used to reach the flow's output as NaN only
    eagerly and under XLA: a graph's fused matmul-bias-ReLU kernel turned them
    into zeros, and the log-density of an unknown label came out finite. With a
    network after the embedding (`kerasflows train --context-classes K
    --context-encoder UNITS`), its own Dense-ReLU did the same in every mode."""
    encoder = L.ClassEmbedding(3, 4)
    if network:
        encoder = keras.Sequential([encoder, keras.layers.Dense(8, activation="relu"),
                                    keras.layers.Dense(4)])
    flow = kerasflows.models.RealNVP(2, num_layers=2, hidden_units=(8,), context_dim=1,
                                     context_encoder=encoder)
    perturb_weights(flow, seed=1)
    x = np.array([[0.5, -0.2], [0.1, 0.3]], np.float32)
    labels = np.array([[7.0], [1.0]], np.float32)
    for mode in ("graph", "xla", "eager"):
        flow.eval_mode = mode
        lp = flow.log_prob(x, context=labels).numpy()
        assert np.isnan(lp[0]) and np.isfinite(lp[1]), mode
        drawn = flow.sample(2, context=labels, seed=0).numpy()
        assert np.isnan(drawn[0]).all() and np.isfinite(drawn[1]).all(), mode
        states = flow.trace(drawn, context=labels)
        assert all(np.isnan(s[0]).all() for s in states[1:]), mode
    flow.eval_mode = "graph"
    assert np.isnan(flow.predict((x, labels), verbose=0)[0])
    served = tf.saved_model.load(flow.export(tmp_path / "served"))
    for label in (7.0, -3.0):
        labels[0] = label
        got = served.signatures["serving_default"](x=tf.constant(x),
                                                   context=tf.constant(labels))
        assert np.isnan(got["log_prob"][0]) and np.isfinite(got["log_prob"][1]), label
    got = served.signatures["sample"](n=tf.constant(2), seed=tf.constant(0),
                                      context=tf.constant(labels))
    assert np.isnan(got["samples"][0]).all() and np.isfinite(got["samples"][1]).all()


def test_a_nan_context_through_a_dense_relu_encoder_gives_nan_in_every_mode(tmp_path):
    """The encoder's own fused matmul-bias-ReLU kernel turned a NaN context into finite
    features in a graph (the default eval_mode, and the export): the row got a
    plausible log-density and samples."""
    encoder = keras.Sequential([keras.layers.Dense(8, activation="relu"),
                                keras.layers.Dense(4)])
    flow = kerasflows.models.NSF(2, num_layers=2, hidden_units=(8,), context_dim=3,
                                 context_encoder=encoder)
    perturb_weights(flow, seed=1)
    x = np.array([[0.5, -0.2], [0.1, 0.3]], np.float32)
    context = np.array([[0.0, 1.0, 0.0], [np.nan, 1.0, 0.0]], np.float32)
    for mode in ("graph", "xla", "eager"):
        flow.eval_mode = mode
        lp = flow.log_prob(x, context=context).numpy()
        assert np.isfinite(lp[0]) and np.isnan(lp[1]), (mode, lp)
        drawn = flow.sample(2, context=context, seed=0).numpy()
        assert np.isfinite(drawn[0]).all() and np.isnan(drawn[1]).all(), mode
    served = tf.saved_model.load(flow.export(tmp_path / "served"))
    got = served.signatures["serving_default"](x=tf.constant(x), context=tf.constant(context))
    assert np.isfinite(got["log_prob"][0]) and np.isnan(got["log_prob"][1])


def test_the_shipped_class_conditional_digits_draw_the_digit_asked_for():
    """saved_models/digits_label: 100 samples per label, classified by a logistic
    regression fitted to real digits; most must be the label they were drawn for."""
    from digit_classifier import LogisticRegression
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "saved_models", "digits_label")
    flow = kerasflows.load(folder)
    assert isinstance(flow.context_encoder, L.ClassEmbedding)
    x, c = kerasflows.datasets.load_conditional("digits_label", seed=5)
    classifier = LogisticRegression().fit(x, c[:, 0])
    right = [np.mean(classifier.predict(flow.sample(100, context=[[d]], seed=d).numpy()) == d)
             for d in range(10)]
    assert min(right) > 0.6 and np.mean(right) > 0.9, np.round(right, 2)


@pytest.mark.parametrize("name, context", [("digits_label", [[12.0], [3.0]]),
                                           ("ring_radius", [[np.nan], [1.0]])])
def test_the_shipped_conditional_saved_models_give_nan_for_a_context_they_cannot_read(
        name, context):
    """Exported with the flow's code of today: an unknown label or a NaN context gives
    NaN (the digits' SavedModel, exported before, raised for label 12)."""
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "saved_models", name)
    served = tf.saved_model.load(os.path.join(folder, "saved_model", "1"))
    dim = kerasflows.load(folder).event_dim
    got = served.signatures["serving_default"](
        x=tf.zeros([2, dim]), context=tf.constant(context, tf.float32))["log_prob"].numpy()
    assert np.isnan(got[0]) and np.isfinite(got[1])
    # and their one-number context sent without its column axis (REST's "context": [2.5])
    # is refused by name (it failed inside, "slice index 1 of dimension 0 out of bounds")
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"context must have shape \[N, 1\]; received shape\] \[2\]"):
        served.signatures["serving_default"](x=tf.zeros([2, dim]),
                                             context=tf.constant([1.0, 2.0]))


def test_a_batch_normalizing_encoder_updates_its_statistics_only_in_fit():
    rng = np.random.default_rng(0)
    c = (3 + 2 * rng.normal(size=(1024, 4))).astype(np.float32)
    x = rng.normal(size=(1024, 2)).astype(np.float32)
    encoder = keras.Sequential([keras.layers.Dense(8), keras.layers.BatchNormalization(),
                                keras.layers.Dense(3)])
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,), context_dim=4,
                                     context_encoder=encoder)
    norm = encoder.layers[1]
    before = norm.moving_mean.numpy().copy()
    flow.log_prob(x, context=c)                                # inference: no update
    np.testing.assert_array_equal(norm.moving_mean.numpy(), before)
    flow.compile(optimizer=keras.optimizers.Adam(1e-3))
    flow.fit((x, c), batch_size=128, epochs=2, verbose=0)
    assert np.abs(norm.moving_mean.numpy() - before).max() > 0.1
    once, again = (flow.log_prob(x[:5], context=c[:5]).numpy() for _ in range(2))
    np.testing.assert_array_equal(once, again)


class EagerOnlyShape(keras.layers.Layer):
    """Doubles the context; Keras cannot call it on symbolic tensors."""

    def call(self, c):
        return 2.0 * c

    def compute_output_spec(self, *args, **kwargs):
        raise NotImplementedError("no symbolic call")


def test_an_encoder_keras_cannot_call_symbolically_is_built_on_a_row_of_zeros():
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,), context_dim=3,
                                     context_encoder=EagerOnlyShape())
    assert {l.context_dim for l in flow.flow_layers} - {None} == {3}
    perturb_weights(flow, seed=0)
    x, c = np.zeros((4, 2), np.float32), np.ones((4, 3), np.float32)
    doubled = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,), context_dim=3)
    doubled.set_weights(flow.get_weights())
    np.testing.assert_allclose(flow.log_prob(x, context=c).numpy(),
                               doubled.log_prob(x, context=2 * c).numpy(), rtol=1e-6)


def test_sharded_steps_count_encoder_losses_and_advance_its_dropout_seed():
    """The parts of a sharded step run the flow on the weights' values in a
    `keras.StatelessScope`: the encoder's regularization losses (of its weights, and
    of its activity, added by `add_loss` in the call) still count, once, and its
    dropout's seed still moves on from step to step."""
    x, c = (tf.constant(a) for a in _data(256, seed=5))
    losses = {}
    for reg, shards in ((0.0, 1), (0.5, 1), (0.5, 2)):
        keras.utils.set_random_seed(2)
        encoder = keras.Sequential([
            keras.layers.Dense(16, activation="relu",
                               kernel_regularizer=keras.regularizers.L2(reg),
                               activity_regularizer=keras.regularizers.L2(reg / 100)),
            keras.layers.Dense(3)], name="encoder")
        flow = kerasflows.models.RealNVP(2, num_layers=2, hidden_units=(16,), context_dim=C,
                                         context_encoder=encoder)
        step = make_train_step(flow, keras.optimizers.Adam(1e-2), shards=shards)
        losses[reg, shards] = [float(step(x, c)) for _ in range(3)]
    np.testing.assert_allclose(losses[0.5, 2], losses[0.5, 1], rtol=1e-4, atol=1e-5)
    assert losses[0.5, 1][0] > losses[0.0, 1][0] + 0.1        # the L2 term is in the loss

    flow = _flow(dropout=0.5)
    step = make_train_step(flow, keras.optimizers.Adam(1e-2), shards=2)
    (seed,) = [v for v in flow.context_encoder.non_trainable_variables
               if v.path.endswith("seed_generator_state")]
    states = []
    for _ in range(3):
        step(x, c)
        states.append(seed.numpy().copy())
    assert not np.array_equal(states[0], states[1]) and not np.array_equal(states[1], states[2])


def _functional_label_encoder():
    labels = keras.Input((1,))
    return keras.Model(labels, keras.layers.Dense(4)(L.ClassEmbedding(4)(labels)))


@pytest.mark.parametrize("encoder", [
    lambda: keras.Sequential([L.ClassEmbedding(4), keras.layers.Dense(4)]),
    _functional_label_encoder], ids=["sequential", "functional"])
def test_fit_and_evaluate_refuse_unknown_labels_of_an_embedding_inside_an_encoder(encoder):
    # (a Sequential is what `kerasflows train --context-classes 4 --context-encoder 16,4`
    # builds): only an encoder that was itself a ClassEmbedding was checked, then a
    # Sequential's first layer too; fit turned the weights NaN (a functional encoder's
    # until now, whose export also said no context_classes)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2)).astype("float32")
    labels = rng.integers(0, 4, size=(64, 1)).astype("float32")
    labels[5, 0] = 7.0
    flow = kerasflows.models.RealNVP(2, num_layers=2, hidden_units=(8,), context_dim=1,
                                     context_encoder=encoder())
    flow.compile(optimizer="adam", jit_compile=False)
    for call in (lambda: flow.fit((x, labels), epochs=1, batch_size=32, verbose=0),
                 lambda: flow.evaluate((x, labels), verbose=0)):
        with pytest.raises(ValueError, match=r"labels for ClassEmbedding\(num_classes=4\) "
                                             r"are 0..3; received 7.0 in row 5"):
            call()
    weights = [w.numpy() for w in flow.trainable_weights]
    assert all(np.isfinite(w).all() for w in weights)
    assert isinstance(label_embedding(flow), L.ClassEmbedding)
    # a functional encoder whose embedding reads another layer's output reads no labels
    c_in = keras.Input((1,))
    later = keras.Model(c_in, L.ClassEmbedding(4)(keras.layers.Dense(1)(c_in)))
    assert label_embedding(kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,),
                                                     context_dim=1,
                                                     context_encoder=later)) is None
