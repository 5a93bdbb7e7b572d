"""One conformance suite over every shipped layer and every ready-made flow.

Every check runs on weights moved away from their initial values (a
zero-initialised last layer makes a coupling the identity and hides bugs).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from kerasflows import layers as L
from kerasflows.testing import (FlowLayerCheckError, _batch_jacobian, check_flow_layer,
                                perturb_weights)
from batch_shapes import check_bijector_batch_shapes
from registry import FLOWS, INTERVAL_LAYERS, LAYERS


def _layer_cases():
    for name, (_, needs_split, conditional) in LAYERS.items():
        dims = (2, 3, 5) if needs_split else (2, 5)
        for dim in dims:
            for ctx in ((None, 3) if conditional else (None,)):
                yield pytest.param(name, dim, ctx, "float64", id=f"{name}-d{dim}-c{ctx}-f64")
        yield pytest.param(name, 2, None, "float32", id=f"{name}-d2-f32")


@pytest.mark.parametrize("name,dim,ctx,dtype", list(_layer_cases()))
def test_layer_is_valid_flow_transformation(name, dim, ctx, dtype):
    # Seeded, as the mixed-dtype checks. Unseeded, a float32 forward spline coupling now
    # and then draws a bin whose slope falls to ~1e-6 mid-bin (steep knots, tiny height):
    # there float32 outputs cannot hold the inputs (one ulp of y is ~0.1 in z), and its
    # forward and inverse log-dets came 0.003 apart in a CI run (0 of 40 seeds do).
    keras.utils.set_random_seed(0)
    layer = LAYERS[name][0](ctx, dtype)
    report = check_flow_layer(layer, dim, context_dim=ctx, perturb=0.2)
    assert report["logdet_error"] is not None


def test_check_flow_layer_holds_a_layer_to_the_tolerances_it_is_given():
    """A zero tolerance was read as "the default" (`inverse_atol or default`)."""
    keras.utils.set_random_seed(0)
    report = check_flow_layer(L.AffineCoupling(hidden_units=(8,)), 3, perturb=0.5)
    assert report["inverse_error"] > 0     # float32 round trips are not exact
    with pytest.raises(FlowLayerCheckError, match=r"\(> 0\)"):
        check_flow_layer(L.AffineCoupling(hidden_units=(8,)), 3, perturb=0.5, inverse_atol=0.0)
    # NaN tolerances passed every check (nan > atol is False); negative ones failed all
    for bad in (float("nan"), -1.0, "0.1"):
        with pytest.raises(ValueError, match=r"`inverse_atol` must be a finite number >= 0"):
            check_flow_layer(L.AffineCoupling(hidden_units=(8,)), 3, inverse_atol=bad)
        with pytest.raises(ValueError, match=r"`logdet_atol` must be a finite number >= 0"):
            check_flow_layer(L.AffineCoupling(hidden_units=(8,)), 3, logdet_atol=bad)

    class NaNInverseLogDet(L.AffineCoupling):    # a NaN inverse log-det passed every check
        def inverse_and_log_det(self, x, context=None, training=False):
            z, ld = super().inverse_and_log_det(x, context=context, training=training)
            return z, ld * np.nan
    with pytest.raises(FlowLayerCheckError, match="inverse output or log-det is not finite"):
        check_flow_layer(NaNInverseLogDet(hidden_units=(8,)), 3, check_config=False)


def test_check_flow_layer_holds_transform_to_the_maps_with_log_dets():
    """`Flow.forward`/`Flow.inverse` run a layer's `transform` (the map alone): one that
    drifts from `forward_and_log_det`'s map, in either direction, is named, and the
    Jacobian checked against the log-det is `transform`'s."""
    class Drifting(L.AffineCoupling):
        shift = {True: 0.0, False: 0.0}

        def transform(self, v, context=None, forward=True):
            return super().transform(v, context=context, forward=forward) + self.shift[forward]

    keras.utils.set_random_seed(0)
    assert check_flow_layer(Drifting(hidden_units=(8,)), 3, perturb=0.5,
                            check_config=False)["logdet_error"] < 1e-3
    for forward in (True, False):
        Drifting.shift = {True: 0.0, False: 0.0, forward: 0.1}
        with pytest.raises(FlowLayerCheckError, match=rf"transform\(forward={forward}\) "
                                                      r"differs from .* by 0\.1"):
            check_flow_layer(Drifting(hidden_units=(8,)), 3, perturb=0.5, check_config=False)

    class Stretched(L.AffineCoupling):       # a map whose Jacobian the log-det misses
        def transform(self, v, context=None, forward=True):
            y = super().transform(v, context=context, forward=forward)
            return y * (1.0 + 1e-4 * tf.reduce_sum(y * y, axis=-1, keepdims=True))

    with pytest.raises(FlowLayerCheckError, match="autodiff Jacobian"):
        check_flow_layer(Stretched(hidden_units=(8,)), 3, perturb=0.5,
                         inverse_atol=1.0, logdet_atol=1e-4, check_config=False)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(INTERVAL_LAYERS))
def test_interval_layers(name, dtype):
    layer = INTERVAL_LAYERS[name](dtype)
    layer.ensure_built(3)
    rng = np.random.default_rng(0)
    z = tf.constant(rng.uniform(0.05, 0.95, (16, 3)), dtype)
    x, ld = layer.forward_and_log_det(z)
    z2, ild = layer.inverse_and_log_det(x)
    np.testing.assert_allclose(z2, z, atol=1e-5 if dtype == "float64" else 1e-4)
    np.testing.assert_allclose(ild, -ld, atol=1e-6 if dtype == "float64" else 1e-4)
    with tf.GradientTape() as tape:
        tape.watch(z)
        x, _ = layer.forward_and_log_det(z)
    _, logdet = np.linalg.slogdet(tape.batch_jacobian(x, z).numpy().astype(np.float64))
    np.testing.assert_allclose(logdet, ld, atol=1e-6 if dtype == "float64" else 1e-3)


def _flow_cases():
    for name in FLOWS:
        # D=2 (one coordinate per half) and an odd D=5; the autoregressive spline
        # flow samples one dimension at a time, so it takes D=3 (D=5 is covered
        # layer by layer in test_layer_is_valid_flow_transformation)
        for dim in ((2, 3) if name == "NSF_autoregressive" else (2, 5)):
            for ctx in (None, 3):
                yield pytest.param(name, dim, ctx, "float64", id=f"{name}-d{dim}-c{ctx}-f64")
        yield pytest.param(name, 2, None, "float32", id=f"{name}-d2-f32")


def _perturbed_flow(name, dim, ctx, dtype, seed=0):
    flow = FLOWS[name](dim, ctx, dtype)
    flow.eval_mode = "eager"  # numerics only: skip tracing each small one-off call
    perturb_weights(flow, 0.2, seed)
    rng = np.random.default_rng(seed + 7)
    z = tf.constant(1.5 * rng.standard_normal((12, dim)), dtype)
    c = None if ctx is None else tf.constant(rng.standard_normal((12, ctx)), dtype)
    return flow, z, c


@pytest.mark.parametrize("name,dim,ctx,dtype", list(_flow_cases()))
def test_flow_round_trip_and_log_det(name, dim, ctx, dtype):
    flow, z, c = _perturbed_flow(name, dim, ctx, dtype)
    f64 = dtype == "float64"
    x, fld = flow.forward_and_log_det(z, context=c)
    z2, ild = flow.inverse_and_log_det(x, context=c)
    np.testing.assert_allclose(z2, z, atol=1e-5 if f64 else 2e-3)
    np.testing.assert_allclose(ild, -fld, atol=1e-6 if f64 else 2e-3, rtol=0 if f64 else 1e-4)
    jac = _batch_jacobian(lambda v: flow._run_forward(v, c)[0], z)
    _, logdet = np.linalg.slogdet(jac.astype(np.float64))
    np.testing.assert_allclose(logdet, fld, atol=1e-6 if f64 else 2e-3, rtol=0 if f64 else 1e-4)
    # log p(x) is the base density of z plus the inverse log-det
    lp = flow.log_prob(x, context=c)
    np.testing.assert_allclose(lp, flow.base_log_prob(z2) + ild, rtol=1e-6 if f64 else 1e-4)


#: Layers defined on all of R^D with finite outputs there (`exp` overflows by design).
UNBOUNDED = sorted(n for n in LAYERS if n not in ("exp", "sigmoid", "planar", "radial"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", UNBOUNDED)
def test_layer_outputs_and_gradients_finite_far_from_data(name, dtype):
    layer = LAYERS[name][0](None, dtype)
    layer.ensure_built(3)
    perturb_weights(layer, 0.5, seed=2)
    x = tf.constant([[1e3, -1e3, 1e3], [-1e3, 1e3, -1e3], [0.5, 1e3, -1e3]], dtype)
    for direction in ("forward_and_log_det", "inverse_and_log_det"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y, ld = getattr(layer, direction)(x)
            loss = tf.reduce_sum(y) + tf.reduce_sum(ld)
        grads = tape.gradient(loss, [x] + layer.trainable_weights)
        for g in [y, ld] + [g for g in grads if g is not None]:
            assert np.all(np.isfinite(tf.convert_to_tensor(g).numpy())), direction


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_bijector_takes_any_batch_shape_as_tfp_distributions_do(name):
    """`layer.bijector()` in a `TransformedDistribution`: `sample()` is `[D]`,
    `sample([2, 4])` `[2, 4, D]`, each the rows' numbers; a conditional layer's
    bijector without its context says so."""
    factory, _, conditional = LAYERS[name]
    layer = factory(None, "float64")
    layer.ensure_built(3)
    perturb_weights(layer, 0.2, seed=1)
    cond = None
    if conditional:
        cond = factory(2, "float64")
        cond.ensure_built(3)
    check_bijector_batch_shapes(layer, cond)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_methods_give_the_numbers_of_its_bijector(name):
    """`layer.forward_and_log_det` (and the inverse) compute what `layer.bijector()`
    does: several layers run their maths without TFP's call machinery, faster."""
    factory, _, conditional = LAYERS[name]
    layer = factory(2 if conditional else None, "float64")
    layer.ensure_built(3)
    perturb_weights(layer, 0.3, seed=4)
    rng = np.random.default_rng(4)
    z = tf.constant(rng.standard_normal((6, 3)))
    c = tf.constant(rng.standard_normal((6, 2))) if conditional else None
    if layer.needs_data_init:
        layer.data_init(z, context=c)
    b = layer.bijector(context=c)
    if conditional:     # other rows than the context's: named, not TensorFlow's concat error
        with pytest.raises(ValueError, match=r"^The context has 6 rows and the inputs 4: "
                           "give one context row per input row, or one row shared by all"):
            layer.bijector(context=c).forward(z[:4])
    x, ld = layer.forward_and_log_det(z, context=c)
    np.testing.assert_allclose(x, b.forward(z), rtol=1e-12, atol=1e-12)
    # chained with another bijector (a flow's `bijector`, a user's tfb.Chain): the
    # ContinuousFlow's, of dtype "float32" (a str), took its input as strings
    assert b.dtype is None or isinstance(b.dtype, tf.DType), b.dtype
    chain = tfp.bijectors.Chain([b, tfp.bijectors.Shift(tf.constant(0.0, tf.float64))])
    np.testing.assert_allclose(chain.forward(z), x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ld, np.broadcast_to(b.forward_log_det_jacobian(z, 1), (6,)),
                               rtol=1e-10, atol=1e-12)
    if not layer.forward_only:
        x = tf.constant(x.numpy())                  # not TFP's cache of the forward call
        z2, ild = layer.inverse_and_log_det(x, context=c)
        np.testing.assert_allclose(z2, b.inverse(x), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(chain.inverse(x), z2, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ild, np.broadcast_to(b.inverse_log_det_jacobian(x, 1), (6,)),
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_log_prob_finite_far_outside_data(name):
    flow, _, _ = _perturbed_flow(name, 2, None, "float32")
    far = np.array([[1e3, -1e3], [1e3, 1e3], [-1e3, 0.0], [0.0, 1e3], [50.0, -7.0],
                    [-300.0, 20.0], [1e-3, 1e3]], np.float32)
    lp = flow.log_prob(far).numpy()
    assert np.all(np.isfinite(lp)), lp
    # as far as float32's range lets log p be finite: -0.5 z^2 passes -3.4e38 from
    # about |z| = 2.6e19, and below that log p is -inf (never NaN)
    farther = np.array([[1e6, -1e6], [1e10, 3.0], [-1e15, 1e15]], np.float32)
    lp = flow.log_prob(farther).numpy()
    assert np.all(np.isfinite(lp)) and np.all(lp < -1e4), lp
    beyond = flow.log_prob(np.array([[1e25, 0.0], [1e30, -1e30]], np.float32)).numpy()
    assert np.all(beyond == -np.inf), beyond
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(flow(far))
    grads = tape.gradient(loss, flow.trainable_weights)
    assert all(np.all(np.isfinite(g.numpy())) for g in grads if g is not None)


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_every_flow_trains_with_fits_default_xla_step_at_three_dimensions(name):
    """A 3-D IAF's training step did not compile (XLA: the gradient of a
    tf.broadcast_to inside the while loop of its sequential density direction);
    3-D is where the autoregressive layers loop (2-D needs no loop, and from 4-D
    on MADE.solve runs instead)."""
    keras.utils.set_random_seed(0)
    flow = FLOWS[name](3, None, "float32")
    flow.compile(optimizer=keras.optimizers.Adam(1e-2))      # jit_compile="auto": XLA
    x = np.random.default_rng(0).normal(size=(128, 3)).astype("float32")
    before = [w.numpy() for w in flow.trainable_weights]
    loss = flow.fit(x, batch_size=64, epochs=1, verbose=0).history["loss"][0]
    assert np.isfinite(loss)
    assert any(np.abs(w.numpy() - b).max() > 0 for w, b in zip(flow.trainable_weights, before))


@pytest.mark.parametrize("ctx", [None, 2])
@pytest.mark.parametrize("name", sorted(FLOWS))
def test_save_and_load_give_identical_flow(name, ctx, tmp_path):
    flow, z, c = _perturbed_flow(name, 3, ctx, "float32", seed=1)
    flow.eval_mode = "graph"  # the default path
    c10 = None if ctx is None else np.random.default_rng(2).standard_normal((10, ctx)).astype("float32")
    path = str(tmp_path / "flow.keras")
    flow.save(path)
    loaded = keras.models.load_model(path)  # safe_mode is on by default
    x = flow.sample(10, context=c10, seed=5)
    np.testing.assert_array_equal(loaded.sample(10, context=c10, seed=5), x)
    np.testing.assert_array_equal(loaded.log_prob(x, context=c10), flow.log_prob(x, context=c10))
    assert [l.name for l in loaded.flow_layers] == [l.name for l in flow.flow_layers]


def test_an_unbuilt_layers_bijector_says_it_is_not_built():
    """`Permute().bijector()` raised "AttributeError: 'Permute' object has no attribute
    'permutation'" (each layer its own missing weight); a layer of no weights
    (Sigmoid) gives its bijector unbuilt, as before."""
    weightless = []
    for name, (make, _, _) in sorted(LAYERS.items()):
        layer = make(None, "float32")
        try:
            layer.bijector()
        except ValueError as e:
            assert f"'{layer.name}' is not built" in str(e) and "ensure_built" in str(e), name
            layer.ensure_built(3)
            layer.bijector()
        else:
            weightless.append(name)
    assert "sigmoid" in weightless and "permute_reverse" not in weightless, weightless


def test_check_flow_layer_and_perturb_weights_name_bad_arguments():
    """batch=0 gave NumPy's "zero-size array to reduction operation", event_dim=2.0 a
    TypeError naming nothing, and perturb_weights(scale=nan) made every weight NaN."""
    for kwargs, says in (({"batch": 0}, r"`batch` must be an integer >= 1"),
                         ({"inputs": np.zeros((0, 2))}, r"`inputs` must hold at least one row"),
                         ({"event_dim": 2.0}, r"`event_dim` must be an integer >= 1")):
        with pytest.raises(ValueError, match=says):
            check_flow_layer(L.ElementwiseAffine(), **{"event_dim": 2, **kwargs})
    layer = L.ElementwiseAffine()
    layer.ensure_built(2)
    for scale in (float("nan"), "big", -1.0):
        with pytest.raises(ValueError, match=r"`scale` must be a finite number >= 0"):
            perturb_weights(layer, scale)
    assert all(np.isfinite(w.numpy()).all() for w in layer.weights)
