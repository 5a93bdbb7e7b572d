"""The Flow model's API: sampling, traces, TFP views, bases, conditional use."""

import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import kerasflows
from kerasflows import layers as L
from kerasflows import models as M
from kerasflows.testing import perturb_weights

tfd = tfp.distributions


@pytest.fixture(scope="module")
def flow():
    keras.utils.set_random_seed(0)      # the same flow whichever tests ran before
    f = M.RealNVP(2, num_layers=3, hidden_units=(16,))
    perturb_weights(f, 0.3)
    return f


def test_sample_is_reproducible_with_seed_and_differs_without(flow):
    a, b = flow.sample(50, seed=3), flow.sample(50, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(flow.sample(50, seed=4), a)
    assert not np.allclose(flow.sample(50), flow.sample(50))
    assert a.shape == (50, 2)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_philox_normal_gives_the_numbers_of_stateless_normal(dtype):
    # Flow.sample's noise runs the one-op kernel; the numbers must stay those of
    # tf.random.stateless_normal(alg="philox"), eagerly, in a graph and under XLA
    from kerasflows.flow import philox_normal
    for shape in ([7, 3], [1000, 2], [300, 64]):
        for seed in ([3, 0], [-5, 0], [2**31 - 1, 0], [12, 7]):
            want = tf.random.stateless_normal(shape, seed=seed, dtype=dtype, alg="philox")
            got = philox_normal(shape, seed, dtype)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got.numpy(), want.numpy())
    for jit in (False, True):
        both = tf.function(lambda s: (philox_normal(tf.stack([5, 2]), s, dtype),
                                      tf.random.stateless_normal([5, 2], seed=s, dtype=dtype,
                                                                 alg="philox")),
                           jit_compile=jit)
        got, want = both(tf.constant([9, 0]))
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_sample_draws_the_philox_noise_of_its_seed(flow):
    z = tf.random.stateless_normal([64, 2], seed=[11, 0], alg="philox")
    np.testing.assert_allclose(flow.sample(64, seed=11), flow.forward(z), rtol=1e-6, atol=1e-6)


def test_sample_scales_and_shifts_the_noise_only_when_it_must():
    # A standard normal base at temperature 1 takes the noise as drawn; any other
    # temperature, or a learned base, maps it by loc + temperature * scale * eps.
    from kerasflows.flow import philox_normal
    eps = philox_normal([40, 3], [5, 0])
    for base in ("normal", "learned_normal"):
        f = M.RealNVP(3, num_layers=2, hidden_units=(8,), base=base)
        perturb_weights(f, 0.3, seed=2)
        loc, scale = (np.zeros(3), np.ones(3)) if base == "normal" else (
            f.base_loc.numpy(), np.exp(f.base_log_scale.numpy()))
        if base == "learned_normal":
            assert not np.allclose(scale, 1.0) and not np.allclose(loc, 0.0)
        for temperature in (1.0, 2.0, 1):
            want = f.forward(tf.constant(loc + temperature * scale * eps.numpy(), tf.float32))
            np.testing.assert_allclose(f.sample(40, seed=5, temperature=temperature), want,
                                       rtol=1e-5, atol=1e-5)
    # a float64 flow takes the temperature in float64 (tf.cast rounded 0.6 to float32)
    f = kerasflows.Flow([L.ElementwiseAffine(dtype="float64")], 3, dtype="float64")
    eps = philox_normal([40, 3], [5, 0], "float64").numpy()
    np.testing.assert_array_equal(f.sample(40, seed=5, temperature=0.6).numpy(), 0.6 * eps)


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_forward_and_inverse_alone_equal_their_log_det_variants(flow, mode):
    flow.eval_mode = mode
    try:
        z = np.random.default_rng(1).standard_normal((9, 2)).astype("float32")
        x, _ = flow.forward_and_log_det(z)
        np.testing.assert_allclose(flow.forward(z), x, rtol=1e-6, atol=1e-6)
        back, _ = flow.inverse_and_log_det(x)
        np.testing.assert_allclose(flow.inverse(x), back, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(back, z, rtol=1e-4, atol=1e-4)
    finally:
        flow.eval_mode = "graph"


def test_temperature_scales_the_base(flow):
    z_cold = flow.inverse(flow.sample(2000, seed=1, temperature=0.5)).numpy()
    z_hot = flow.inverse(flow.sample(2000, seed=1, temperature=1.0)).numpy()
    np.testing.assert_allclose(z_cold, 0.5 * z_hot, rtol=1e-3, atol=1e-3)
    for bad in (0.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="temperature` must be finite and > 0"):
            flow.sample(3, temperature=bad)


def test_seeds_are_int32_integers_and_others_raise(flow):
    np.testing.assert_array_equal(flow.sample(3, seed=np.int64(5)), flow.sample(3, seed=5))
    np.testing.assert_array_equal(flow.sample(3, seed=-2**31), flow.sample(3, seed=-2**31))
    # 2**32 + 5 used to wrap to 5, and 1.7 to be cut to 1
    for bad in (2**32 + 5, 2**31, 1.7, "5"):
        with pytest.raises(ValueError, match="`seed` must be an integer"):
            flow.sample(3, seed=bad)
    with pytest.raises(ValueError, match=r"or a `keras.random.SeedGenerator`; received 1.7"):
        flow.sample(3, seed=1.7)
    # in a traced function a scalar int32 tensor, as n may be (it was refused)
    traced = tf.function(lambda s: flow.sample(3, seed=s))
    np.testing.assert_array_equal(traced(tf.constant(5)), flow.sample(3, seed=5))
    np.testing.assert_array_equal(traced(tf.constant(-2**31)), flow.sample(3, seed=-2**31))
    for bad in (tf.constant(5, tf.int64), tf.constant([5]), tf.constant(5.0)):
        with pytest.raises(ValueError, match=r"in a traced function, a scalar int32 tensor"):
            tf.function(lambda s: flow.sample(3, seed=s))(bad)
    # a tensor of a value known at tracing (a constant), and eager tensors, as integers
    constant = tf.function(lambda: flow.sample(3, seed=tf.constant(5)))
    np.testing.assert_array_equal(constant(), flow.sample(3, seed=5))
    np.testing.assert_array_equal(flow.sample(3, seed=tf.constant(5, tf.int64)),
                                  flow.sample(3, seed=5))
    with pytest.raises(ValueError, match="`seed` must be an integer"):
        flow.sample(3, seed=tf.constant([5]))


def test_sample_takes_a_keras_seed_generator_and_advances_it(flow):
    """As `keras.random`'s functions do: two generators of one seed give the same
    draws, and each call (eager or traced) advances the one it is given. An
    integer was the only seed taken."""
    a, b = keras.random.SeedGenerator(7), keras.random.SeedGenerator(7)
    first = flow.sample(5, seed=a)
    np.testing.assert_array_equal(first, flow.sample(5, seed=b))
    second = flow.sample(5, seed=a)
    assert not np.allclose(first, second)
    traced = tf.function(lambda: flow.sample(5, seed=b))
    np.testing.assert_array_equal(traced(), second)
    assert not np.allclose(traced(), second)
    x, log_prob = flow.sample_and_log_prob(5, seed=keras.random.SeedGenerator(7))
    np.testing.assert_array_equal(x, first)
    np.testing.assert_allclose(log_prob, flow.log_prob(x), rtol=1e-4, atol=1e-4)


def test_integer_inputs_are_converted_and_other_dtypes_raise(flow):
    x = np.array([[1, -2], [0, 3]])
    want = flow.log_prob(x.astype("float32")).numpy()
    for given in (x, x.astype("int32"), tf.constant(x), tf.constant(x, tf.float64)):
        np.testing.assert_allclose(flow.log_prob(given), want, rtol=1e-6)
    for bad, dtype in ((np.ones((2, 2), bool), "bool"), (tf.ones((2, 2), tf.bool), "bool"),
                       (np.array([["a", "b"]]), "<U1")):
        with pytest.raises(ValueError, match=f"must be numbers .*dtype {dtype}"):
            flow.log_prob(bad)
    # a bfloat16 array (`.numpy()` of a bfloat16 tensor; NumPy's kind "V") is numbers too:
    # refused by log_prob, inverse, sample's context while fit took it
    low = tf.constant(x, tf.bfloat16).numpy()
    assert low.dtype.kind == "V"
    np.testing.assert_allclose(flow.log_prob(low), want, rtol=1e-6)
    np.testing.assert_allclose(flow.inverse(low), flow.inverse(x.astype("float32")), rtol=1e-6)
    import ml_dtypes       # float8 types TensorFlow cannot cast ("fnuz"): through NumPy
    for kind in (ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2):
        np.testing.assert_allclose(flow.log_prob(x.astype(kind)), want, rtol=1e-6)


def test_calling_a_flow_takes_its_batch_forms_and_names_the_others(flow):
    """An unconditional flow takes x or (x,) (as `fit` does); other sequences are refused
    naming the flow as unconditional (they were described as a conditional flow's)."""
    x = np.array([[0.5, -1.0], [2.0, 0.0]], "float32")
    np.testing.assert_allclose(flow((x,)), flow(x), rtol=1e-6)
    for given in ((x, x), (x, x, x)):
        with pytest.raises(ValueError, match=rf"not conditional \(context_dim=None\): it takes x "
                                             rf"of shape \(batch, 2\) alone, or \(x,\); "
                                             rf"received a sequence of {len(given)} items"):
            flow(given)
    conditional = M.MAF(2, num_layers=1, context_dim=1)
    with pytest.raises(ValueError, match=r"A conditional flow takes inputs as \(x, context\); "
                                         r"received a sequence of 1 items"):
        conditional((x,))


def test_sample_and_log_prob_matches_log_prob(flow):
    x, lp = flow.sample_and_log_prob(100, seed=0)
    np.testing.assert_allclose(lp, flow.log_prob(x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(x, flow.sample(100, seed=0), atol=1e-6)


def test_trace_has_every_layer_and_ends_where_forward_ends(flow):
    z = np.random.default_rng(0).standard_normal((7, 2)).astype("float32")
    states, log_dets = flow.trace(z, return_log_dets=True)
    assert len(states) == len(flow.flow_layers) + 1 and len(log_dets) == len(flow.flow_layers)
    x, ld = flow.forward_and_log_det(z)
    np.testing.assert_allclose(states[0], z)
    np.testing.assert_allclose(states[-1], x, atol=1e-5)
    np.testing.assert_allclose(tf.add_n(log_dets), ld, atol=1e-4)
    back, ilds = flow.trace_inverse(x, return_log_dets=True)
    np.testing.assert_allclose(back[-1], z, atol=1e-4)
    for i, state in enumerate(back):  # trace_inverse retraces the forward states
        np.testing.assert_allclose(state, states[-1 - i], atol=1e-4)
    np.testing.assert_allclose(flow.base_log_prob(back[-1]) + tf.add_n(ilds), flow.log_prob(x),
                               atol=1e-4)


def test_tfp_views_agree_with_the_flow(flow):
    x = flow.sample(20, seed=2)
    np.testing.assert_allclose(flow.distribution.log_prob(x), flow.log_prob(x), atol=1e-4)
    z = flow.inverse(x)
    # float32: a sample far in the tail (|x| ~ 300 was seen) differs in its 7th digit
    np.testing.assert_allclose(flow.bijector.forward(z), x, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(flow.bijector.inverse_log_det_jacobian(x, event_ndims=1),
                               flow.inverse_and_log_det(x)[1], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("make", [
    lambda: M.RealNVP(2, num_layers=2, hidden_units=(8,)),
    lambda: M.MAF(3, num_layers=2, hidden_units=(8,)),
    lambda: M.NSF(2, num_layers=2, hidden_units=(8,), bins=4),
    lambda: M.Glow(2, num_layers=2, hidden_units=(8,))], ids=["realnvp", "maf", "nsf", "glow"])
def test_the_tfp_distribution_takes_tfps_shapes(make):
    """The conditioners take [N, D] rows; TFP's own calls give [D] and [a, b, D]."""
    flow = make()
    perturb_weights(flow, 0.3)
    D, d = flow.event_dim, flow.distribution
    assert d.sample(seed=1).shape == (D,)
    assert d.sample([2, 3], seed=1).shape == (2, 3, D)
    x = np.random.default_rng(0).normal(size=(2, 3, D)).astype("float32")
    np.testing.assert_allclose(d.log_prob(x), flow.log_prob(x.reshape(6, D)).numpy().reshape(
        2, 3), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d.log_prob(x[0, 0]), flow.log_prob(x[0, :1])[0], rtol=1e-5,
                               atol=1e-5)
    assert flow.bijector.inner.bijectors      # the layers' own chain
    # float64 NumPy input is taken as TFP takes it for a float32 bijector (a Glow's view
    # had dtype None and refused it in its first layer, a RealNVP's returned float64)
    assert flow.bijector.dtype == tf.float32 and isinstance(flow.bijector.dtype, tf.DType)
    assert flow.bijector.forward(np.zeros((2, D))).dtype == tf.float32


@pytest.mark.parametrize("make", [
    lambda: M.RealNVP(3, num_layers=2, hidden_units=(8,), context_dim=2),
    lambda: M.MAF(5, num_layers=2, hidden_units=(8,), context_dim=2),   # MADE.solve samples
    lambda: M.NSF(3, num_layers=2, hidden_units=(8,), bins=4, context_dim=2),
    lambda: kerasflows.Flow([L.ContinuousFlow(hidden_units=(8,), context_dim=2)], 3,
                            context_dim=2)], ids=["realnvp", "maf", "nsf", "ffjord"])
def test_the_tfp_views_of_a_conditional_flow_take_one_shared_context_row(make):
    """A `[1, C]` context reached the conditioners unrepeated, where TFP's calls
    gave other row counts: ConcatOp errors from `get_distribution(c).log_prob`."""
    flow = make()
    perturb_weights(flow, 0.3, seed=1)
    D, c = flow.event_dim, np.array([[0.5, -1.0]], "float32")
    x = np.random.default_rng(0).normal(size=(2, 3, D)).astype("float32")
    want = flow.log_prob(x.reshape(6, D), context=c).numpy()
    d = flow.get_distribution(c)
    np.testing.assert_allclose(d.log_prob(x).numpy().ravel(), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(flow.get_bijector(c).inverse(x.reshape(6, D)),
                               flow.inverse(x.reshape(6, D), context=c), rtol=1e-4, atol=1e-4)
    assert d.sample([2, 3], seed=1).shape == (2, 3, D)
    assert d.sample(seed=1).shape == (D,)
    # a layer called alone checks the context's rows
    layer = next(l for l in flow.flow_layers if l.context_dim)
    with pytest.raises(ValueError, match="inputs have 6 rows but the context has 2"):
        layer.forward_and_log_det(x.reshape(6, D), context=np.zeros((2, 2), "float32"))
    for got, want in zip(layer.forward_and_log_det(x.reshape(6, D), context=c),
                         layer.forward_and_log_det(x.reshape(6, D), context=np.repeat(c, 6, 0))):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make", [
    lambda: M.Glow(2, num_layers=2, hidden_units=(8,)),
    lambda: M.RealNVP(2, num_layers=2, hidden_units=(8,), standardize=True),
    lambda: kerasflows.Flow([L.Planar(), L.Radial(), L.ElementwiseAffine()], 2),
    lambda: kerasflows.Flow([L.ActNorm(), L.InvertibleLinear(), L.BatchNorm()], 2)],
    ids=["glow", "standardized", "planar", "affine"])
def test_tfp_views_built_after_a_weight_change_give_the_new_weights_numbers(make):
    """TFP's cache is shared by equal bijectors, and bijectors holding the same
    variables were equal whatever the variables held: a distribution or bijector
    built after training answered inputs of one built before from its cache."""
    flow = make()
    flow.build((None, 2))
    z = tf.constant([[0.5, -1.0], [2.0, 0.3]])
    x = flow.bijector.forward(z)
    forward_only = any(layer.forward_only for layer in flow.flow_layers)
    samples = None if forward_only else flow.distribution.sample(3, seed=1)
    perturb_weights(flow, 0.5, seed=2)
    np.testing.assert_allclose(flow.bijector.forward(z), flow.forward(z), rtol=1e-5, atol=1e-5)
    assert np.abs(flow.bijector.forward(z) - x).max() > 1e-2
    if samples is not None:
        np.testing.assert_allclose(flow.distribution.log_prob(samples), flow.log_prob(samples),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(flow.bijector.inverse(x), flow.inverse(x), rtol=1e-5,
                                   atol=1e-5)
    for layer in (layer for layer in flow.flow_layers if layer.trainable_weights):
        before = layer.bijector().forward(z)
        for w in layer.weights:
            if w.trainable:
                w.assign(w + 0.25)
        np.testing.assert_allclose(layer.bijector().forward(z), layer(z), rtol=1e-5,
                                   atol=1e-5)
        assert np.abs(layer.bijector().forward(z) - before).max() > 1e-3, layer.name


@pytest.mark.parametrize("shape", [(5, 2), (5, 1, 2)], ids=["rows", "rank3"])
def test_tfp_views_free_their_inputs_and_outputs(shape):
    """A view held its last input and output, and TFP's process-wide cache, keyed by
    them, held the view: every `flow.distribution` / `flow.bijector` call kept its
    tensors for good (2.5 MB a call of 50,000 rows)."""
    import gc
    import weakref
    flow = M.RealNVP(2, num_layers=2, hidden_units=(8,))
    flow.build((None, 2))
    x = tf.constant(np.random.default_rng(0).normal(size=shape), "float32")
    refs = [weakref.ref(x)]
    for call in (lambda t: flow.distribution.log_prob(t), lambda t: flow.bijector.inverse(t),
                 lambda t: flow.bijector.forward(t)):
        out = call(x)
        refs.append(weakref.ref(out))
        del out
    samples = flow.distribution.sample(7, seed=1)
    refs.append(weakref.ref(samples))
    np.testing.assert_allclose(flow.distribution.log_prob(x), flow.log_prob(
        tf.reshape(x, [-1, 2])).numpy().reshape(shape[:-1]), rtol=1e-5, atol=1e-5)
    del x, samples
    gc.collect()
    assert [r() is None for r in refs] == [True] * len(refs)


def test_a_tfp_view_gives_gradients_through_a_fresh_bijector():
    # a sample from one distribution, scored by another built later: the cache of the
    # first (an equal bijector) gave the base point back, with no path to the weights
    flow = kerasflows.Flow([L.ElementwiseAffine()], 2)
    flow.build((None, 2))
    s = flow.distribution.sample(2, seed=1)
    with tf.GradientTape() as tape:
        log_p = flow.distribution.log_prob(s)
    grads = tape.gradient(log_p, flow.flow_layers[0].shift)
    assert grads is not None and np.abs(grads.numpy()).max() > 0


def test_a_held_iaf_view_scores_the_same_tensor_with_the_new_weights():
    """An IAF's memo of its conditioner's last input held the output its inverse solved,
    which kept TFP's cache entry for the data alive: a view held across training gave
    the same tensor the log-density of the weights before (MAF's did not)."""
    flow = M.IAF(2, num_layers=2, hidden_units=(8,))
    perturb_weights(flow, 0.3)
    held = flow.distribution
    x = tf.constant(np.random.default_rng(0).normal(size=(16, 2)).astype("float32"))
    before = held.log_prob(x).numpy()
    perturb_weights(flow, 0.3, seed=5)
    after = held.log_prob(x).numpy()
    assert np.abs(after - before).max() > 1e-3
    np.testing.assert_allclose(after, flow.log_prob(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("base", ["learned_normal", "student_t"])
def test_a_held_tfp_view_follows_the_weights_and_gives_every_weight_a_gradient(base):
    """A view held from before read ActNorm, InvertibleLinear and a learned base as
    they were when it was built: after a weight change its numbers were of neither
    weights, gradients reached only the conditioners, and its trainable_variables
    was empty. Now it reads every weight when called, and lists the flow's."""
    flow = M.Glow(2, num_layers=2, hidden_units=(8,), base=base)
    perturb_weights(flow, 0.3)        # off the identity start, where gradients are 0
    x = np.random.default_rng(0).normal(size=(64, 2)).astype("float32")
    held, held_bijector = flow.distribution, flow.bijector
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(held.log_prob(x))
    grads = tape.gradient(loss, flow.trainable_variables)
    assert all(g is not None and np.abs(g.numpy()).max() > 0 for g in grads)
    assert ({id(v) for v in held.trainable_variables}
            == {id(w.value) for w in flow.trainable_weights})
    perturb_weights(flow, 0.3, seed=3)
    np.testing.assert_allclose(held.log_prob(x), flow.log_prob(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(held_bijector.inverse(x), flow.inverse(x), rtol=1e-5, atol=1e-5)
    samples = held.sample(5, seed=1)
    np.testing.assert_allclose(held.log_prob(samples), flow.log_prob(samples), rtol=1e-5,
                               atol=1e-5)
    # the same tensor again after a weight change, and under a tape after a call outside
    # one: the view answered from its last build (and TFP's cached log-det), neither
    # weights' numbers, and gave no gradient to the weights it held as values
    x = tf.constant(x)
    held.log_prob(x)
    tf.function(held_bijector.inverse)(x)         # a graph's build, not kept for `inner`
    np.testing.assert_allclose(held_bijector.inner.inverse(x), flow.inverse(x), rtol=1e-5,
                               atol=1e-5)
    perturb_weights(flow, 0.3, seed=4)
    np.testing.assert_allclose(held.log_prob(x), flow.log_prob(x), rtol=1e-5, atol=1e-5)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(held.log_prob(x))
    assert all(g is not None for g in tape.gradient(loss, flow.trainable_variables))
    # a frozen weight is not the view's to train (its tf.Variable is trainable itself)
    flow.flow_layers[0].trainable = False
    frozen = {id(w.value) for w in flow.flow_layers[0].weights}
    listed = {id(v) for v in flow.distribution.trainable_variables}
    assert frozen and not frozen & listed
    assert listed == {id(w.value) for w in flow.trainable_weights}
    flow.trainable = False
    assert flow.distribution.trainable_variables == ()


def test_tfps_fit_surrogate_posterior_trains_every_weight_of_a_flow_view():
    """`tfp.vi.fit_surrogate_posterior` handed `flow.distribution` (built once, before
    the loop) trained the conditioners only; every weight moves now, and the fit
    reaches the target's mean."""
    flow = M.Glow(2, num_layers=2, hidden_units=(8,), base="learned_normal")
    target = tfd.MultivariateNormalDiag(loc=[1.0, -2.0], scale_diag=[0.5, 2.0])
    before = [w.numpy().copy() for w in flow.trainable_weights]
    losses = tfp.vi.fit_surrogate_posterior(
        target.log_prob, flow.distribution, optimizer=keras.optimizers.Adam(0.02),
        num_steps=200, sample_size=64, seed=(1, 2))
    assert losses[-1] < losses[0] - 1.0
    assert [w.path for b, w in zip(before, flow.trainable_weights)
            if np.allclose(b, w.numpy())] == []
    mean = tf.reduce_mean(flow.sample(4000, seed=0), 0).numpy()
    np.testing.assert_allclose(mean, [1.0, -2.0], atol=0.3)
    # a frozen layer: TFP's optimisers train every variable the loss reads unless given
    # the view's list (Keras leaves a frozen weight's tf.Variable trainable), as README says
    flow.flow_layers[0].trainable = False
    frozen = [w.numpy().copy() for w in flow.flow_layers[0].weights]
    view = flow.distribution
    tfp.vi.fit_surrogate_posterior(target.log_prob, view, optimizer=keras.optimizers.Adam(0.02),
                                   num_steps=5, sample_size=16, seed=(1, 2),
                                   trainable_variables=view.trainable_variables)
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(frozen, flow.flow_layers[0].weights))


@pytest.mark.parametrize("recipe", ["MAF", "RealNVP", "NSF"])
def test_a_shared_context_of_rows_unknown_at_tracing_is_shared(recipe):
    """In a function traced for contexts of any rows (`input_signature` [None, C]), a
    [1, C] context went into the conditioners as it was: "ConcatOp: Dimension 0 in
    both shapes must be equal" for the flow's log_prob and sample and for its views."""
    keras.utils.set_random_seed(1)
    flow = getattr(M, recipe)(2, num_layers=2, hidden_units=(8,), context_dim=2)
    perturb_weights(flow, 0.3, seed=5)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 2)).astype("float32")
    c1, c5 = (rng.standard_normal((n, 2)).astype("float32") for n in (1, 5))
    spec = tf.TensorSpec([None, 2])
    calls = [lambda x, c: flow.log_prob(x, context=c),
             lambda x, c: flow.get_distribution(c).log_prob(x),
             lambda x, c: flow.get_bijector(c).inverse(x)]
    for call in calls:
        traced = tf.function(call, input_signature=[spec, spec])
        for c in (c1, c5):
            np.testing.assert_allclose(traced(x, c), call(x, c), rtol=1e-5, atol=1e-5)
    sampled = tf.function(lambda n, c: flow.sample(n, context=c, seed=4),
                          input_signature=[tf.TensorSpec([], tf.int32), spec])
    np.testing.assert_allclose(sampled(tf.constant(5), c1), flow.sample(5, context=c1, seed=4),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.function(calls[0], input_signature=[spec, spec])(x, c5[:3])


def test_a_conditional_distribution_refuses_inputs_of_other_rows_than_its_context():
    flow = M.RealNVP(2, num_layers=2, hidden_units=(8,), context_dim=1)
    c = np.zeros((4, 1), "float32")
    d = flow.get_distribution(c)
    assert d.sample(4, seed=1).shape == (4, 2)
    for call in (lambda: d.sample(seed=1), lambda: d.sample(2, seed=1),
                 lambda: d.log_prob(np.zeros((3, 2), "float32")),
                 lambda: flow.get_bijector(c).inverse(np.zeros((3, 2), "float32"))):
        with pytest.raises(ValueError, match=r"context has 4 rows.*sample\(4\)"):
            call()


def test_empty_batches_of_autoregressive_flows_solved_dimension_by_dimension():
    """From 4 dimensions MADE.solve runs the sampling direction; its row updates
    could not scatter into an empty batch."""
    for make in (lambda: M.MAF(4, num_layers=1, hidden_units=(8,)),
                 lambda: M.NSF(4, num_layers=1, hidden_units=(8,), autoregressive=True)):
        flow = make()
        for mode in ("graph", "eager", "xla"):
            flow.eval_mode = mode
            assert flow.sample(0).shape == (0, 4), mode
    iaf = M.IAF(4, num_layers=1, hidden_units=(8,))
    assert iaf.log_prob(np.zeros((0, 4), "float32")).shape == (0,)


def test_learned_normal_base_is_trained_and_saved(tmp_path):
    f = kerasflows.Flow([L.ElementwiseAffine()], event_dim=2, base="learned_normal")
    assert len(f.trainable_weights) == 4
    x = np.random.default_rng(0).normal([3.0, -1.0], [0.5, 2.0], (2048, 2)).astype("float32")
    f.compile(optimizer=keras.optimizers.Adam(0.05))
    f.fit(x, batch_size=256, epochs=30, verbose=0)
    samples = f.sample(20000, seed=0).numpy()
    np.testing.assert_allclose(samples.mean(0), [3.0, -1.0], atol=0.1)
    np.testing.assert_allclose(samples.std(0), [0.5, 2.0], rtol=0.1)
    f.save(tmp_path / "f.keras")
    g = keras.models.load_model(tmp_path / "f.keras")
    np.testing.assert_array_equal(g.log_prob(x[:5]), f.log_prob(x[:5]))


def test_context_features_is_the_context_width_the_layers_see_without_an_encoder():
    assert kerasflows.Flow([L.AffineCoupling(context_dim=3)], event_dim=2,
                           context_dim=3).context_features == 3
    assert kerasflows.Flow([L.Permute()], event_dim=2).context_features is None



def test_unknown_base_and_bad_layers_raise():
    with pytest.raises(ValueError, match="base"):
        kerasflows.Flow([L.Permute()], event_dim=2, base="laplace")
    with pytest.raises(ValueError, match="FlowLayer"):
        kerasflows.Flow([keras.layers.Dense(2)], event_dim=2)
    with pytest.raises(ValueError, match=r"list of .*received AffineCoupling.*\[layer\]"):
        kerasflows.Flow(L.AffineCoupling(), event_dim=2)     # a TypeError from list()
    # a layer in another dtype failed at the first call, naming neither
    with pytest.raises(ValueError, match="Layer 1 .* computes in float64 but the flow in float32"):
        kerasflows.Flow([L.Permute(), L.Permute(dtype="float64")], event_dim=2)
    with pytest.raises(ValueError, match="Layer 0 .* computes in float32 but the flow in float64"):
        kerasflows.Flow([L.Permute()], event_dim=2, dtype="float64")
    with pytest.raises(ValueError, match="context_dim"):
        kerasflows.Flow([L.AffineCoupling(context_dim=3)], event_dim=2, context_dim=2)
    with pytest.raises(ValueError, match="AffineCoupling needs event_dim >= 2; received event_dim=1"):
        kerasflows.Flow([L.AffineCoupling()], event_dim=1)
    with pytest.raises(ValueError, match="SplineCoupling needs event_dim >= 2"):
        kerasflows.Flow([L.SplineCoupling()], event_dim=1)
    with pytest.raises(ValueError, match=r"NSF needs event_dim >= 2: its coupling layers"):
        M.NSF(1)
    with pytest.raises(ValueError, match="event_dim"):
        kerasflows.Flow([L.Permute()], event_dim=0)
    for bad in (float("inf"), "a", None, 0):       # inf gave NaN at the first call
        with pytest.raises(ValueError, match="`max_log_scale` must be a finite number > 0"):
            L.AffineCoupling(max_log_scale=bad)
    # a context nobody reads: p(x) trained while one believes it is p(x | c)
    with pytest.raises(ValueError, match="context_dim=1 but none of its 2 layers takes a "
                                         "context"):
        kerasflows.Flow([L.AffineCoupling(), L.Permute()], event_dim=2, context_dim=1)


def test_conditional_flow_fits_and_uses_its_context():
    rng = np.random.default_rng(0)
    c = rng.choice([-2.0, 2.0], size=(4096, 1)).astype("float32")
    x = (c + 0.3 * rng.standard_normal((4096, 2))).astype("float32")
    f = M.MAF(2, num_layers=2, hidden_units=(32, 32), context_dim=1)
    f.compile(optimizer=keras.optimizers.Adam(1e-2))
    hist = f.fit((x, c), batch_size=256, epochs=8, verbose=0, validation_data=(x[:512], c[:512]))
    assert hist.history["loss"][-1] < hist.history["loss"][0] - 1.0
    assert "val_loss" in hist.history
    plus = f.sample(2000, context=np.full((2000, 1), 2.0, "float32"), seed=0).numpy()
    minus = f.sample(2000, context=np.full((2000, 1), -2.0, "float32"), seed=0).numpy()
    np.testing.assert_allclose(plus.mean(0), [2.0, 2.0], atol=0.3)
    np.testing.assert_allclose(minus.mean(0), [-2.0, -2.0], atol=0.3)
    # no samples is an empty batch (as TFP's sample(0)); a negative count is refused
    assert f.sample(0, context=np.array([[2.0]], "float32")).shape == (0, 2)
    empty_x, empty_lp = f.sample_and_log_prob(0, context=np.zeros((0, 1), "float32"))
    assert empty_x.shape == (0, 2) and empty_lp.shape == (0,)
    with pytest.raises(ValueError, match=r"`n` must be an integer >= 0. Received: n=-1"):
        f.sample(-1, context=np.array([[2.0]], "float32"))
    # one context row is shared by all samples: the same draws as the tiled context
    shared = f.sample(2000, context=np.array([[2.0]], "float32"), seed=0).numpy()
    np.testing.assert_array_equal(shared, plus)
    x_s, log_p = f.sample_and_log_prob(5, context=np.array([[-2.0]], "float32"), seed=1)
    np.testing.assert_allclose(log_p, f.log_prob(x_s, context=np.full((5, 1), -2.0, "float32")),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"context has 3 rows; expected n=5 .* or 1"):
        f.sample(5, context=np.zeros((3, 1), "float32"))
    # the densities and both directions take one context row per row, or one for all
    for mode in ("graph", "eager", "xla"):
        f.eval_mode = mode
        np.testing.assert_allclose(f.log_prob(x_s, context=np.array([[-2.0]], "float32")),
                                   log_p, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(f.inverse(x_s, context=np.array([[-2.0]], "float32")),
                                   f.inverse(x_s, context=np.full((5, 1), -2.0, "float32")),
                                   rtol=1e-6, atol=1e-6)
        for call in (f.log_prob, f.inverse, f.forward):
            with pytest.raises(ValueError, match=r"have 5 rows \(shape \(5, 2\)\) but the "
                                                 r"context has 3 \(shape \(3, 1\)\)"):
                call(x_s, context=np.zeros((3, 1), "float32"))
    f.eval_mode = "graph"
    # a NaN or inf context gives NaN in every mode (graphs' fused matmul-ReLU kernels
    # turned the NaN into finite numbers)
    bad = np.array([[2.0], [np.nan], [np.inf]], "float32")
    for mode in ("graph", "eager", "xla"):
        f.eval_mode = mode
        lp = f.log_prob(x_s[:3], context=bad).numpy()
        assert np.isfinite(lp[0]) and np.isnan(lp[1:]).all(), mode
        drawn = f.sample(3, context=bad, seed=0).numpy()
        assert np.isfinite(drawn[0]).all() and np.isnan(drawn[1:]).all(), mode
    f.eval_mode = "graph"
    ds = tf.data.Dataset.from_tensor_slices((x, c)).batch(256)
    f.fit(ds, epochs=1, verbose=0)  # (x, context) datasets work too


def test_custom_flow_layer_works_unchanged_in_a_flow(tmp_path):
    import tensorflow_probability as tfp

    @keras.saving.register_keras_serializable(package="test_user")
    class Shift(L.FlowLayer):
        def build_flow(self, event_dim):
            self.shift = self.add_weight(shape=(event_dim,), initializer="zeros", name="shift")

        def bijector(self, context=None):
            return tfp.bijectors.Shift(self.shift)

    f = kerasflows.Flow([Shift(), L.AffineCoupling(hidden_units=(8,))], event_dim=2)
    x = np.random.default_rng(0).normal(4.0, 1.0, (1024, 2)).astype("float32")
    f.compile(optimizer=keras.optimizers.Adam(0.05))
    f.fit(x, batch_size=128, epochs=20, verbose=0)
    # the coupling passes dimension 0 through, so only the Shift can move it to the data
    assert abs(f.flow_layers[0].shift.numpy()[0] - 4.0) < 0.5
    f.save(tmp_path / "f.keras")
    g = keras.models.load_model(tmp_path / "f.keras")
    np.testing.assert_array_equal(g.log_prob(x[:4]), f.log_prob(x[:4]))


def test_block_rows_split_large_batches_evenly():
    from kerasflows.eval_calls import block_rows as _block_rows
    assert _block_rows(None, 8192) is None and _block_rows(16383, 8192) is None
    assert _block_rows(16384, 8192) == 8192
    assert _block_rows(100000, 8192) == 7693          # 13 blocks, 9 padding rows
    for n in (16384, 20001, 65536, 100000, 1234567):
        rows = _block_rows(n, 8192)
        blocks = -(-n // rows)
        assert rows <= 8192 and 0 <= blocks * rows - n < blocks


def test_xla_blocks_of_many_batch_sizes_share_a_few_traced_functions(monkeypatch):
    """Each batch size from two blocks on split evenly into its own block size, a
    traced function kept for good (7 for 10 sizes from 16,384 rows); the even size
    is rounded up to a 16th of the block, so there are at most 16, same numbers."""
    monkeypatch.setattr(kerasflows.eval_calls, "EVAL_BLOCK_ROWS", 64)
    flow = kerasflows.Flow([L.ElementwiseAffine()], 2)
    perturb_weights(flow, 0.3)
    x = np.random.default_rng(0).normal(size=(700, 2)).astype("float32")
    sizes = (128, 129, 150, 157, 200, 201, 333, 450, 451, 700)
    flow.eval_mode = "eager"
    expected = [flow.log_prob(x[:n]) for n in sizes]
    flow.eval_mode = "xla"
    for n, want in zip(sizes, expected):
        np.testing.assert_allclose(flow.log_prob(x[:n]), want, rtol=1e-6, atol=1e-6)
    rows = sorted(key[2] for key in flow._compiled)
    assert all(r % 4 == 0 and r <= 64 for r in rows), rows
    assert len(rows) <= 5, rows


def test_gradients_through_xla_calls_with_loops_match_eager():
    # MADE's solve and the blocks are loops: a tape could not take gradients back
    # through them from an XLA call ("TensorList crossing the XLA/TF boundary")
    flow = M.MAF(3, num_layers=2, hidden_units=(8,))
    perturb_weights(flow, 0.3)
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    calls = {"sample": lambda: flow.sample(16, seed=3),
             "log_prob": lambda: flow.log_prob(x)}
    grads = {}
    for mode in ("eager", "xla"):
        flow.eval_mode = mode
        for name, call in calls.items():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(call())
            grads[mode, name] = tape.gradient(loss, flow.trainable_weights)
    for name in calls:
        for a, b in zip(grads["eager", name], grads["xla", name]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert any(key[1] == "xla" for key in flow._compiled) is False    # as graphs
    flow.log_prob(x)                                       # and without a tape, XLA
    assert any(key[1] == "xla" for key in flow._compiled)


@pytest.mark.parametrize("recipe", ["RealNVP", "MAF", "IAF", "Glow"])
def test_xla_evaluation_in_blocks_gives_the_whole_batch_results(monkeypatch, recipe):
    monkeypatch.setattr(kerasflows.eval_calls, "EVAL_BLOCK_ROWS", 64)
    keras.utils.set_random_seed(0)
    flow = getattr(M, recipe)(3, num_layers=2, hidden_units=(16,), context_dim=2)
    perturb_weights(flow, 0.3)
    rng = np.random.default_rng(0)
    x, c = (rng.normal(size=(1000, d)).astype("float32") for d in (3, 2))
    calls = {
        "log_prob": lambda: flow.log_prob(x, c),
        "forward": lambda: flow.forward_and_log_det(x, c),
        "inverse": lambda: flow.inverse_and_log_det(x, c),
        "trace": lambda: flow.trace(x, c, return_log_dets=True),
        "trace_inverse": lambda: flow.trace_inverse(x, c, return_log_dets=True),
    }
    if recipe != "RealNVP":
        # trace / trace_inverse / inverse_and_log_det run the same layer code as
        # forward / log_prob, in the same blocks: once (RealNVP) is enough
        calls = {name: calls[name] for name in ("log_prob", "forward")}
    flow.eval_mode = "eager"
    expected = {name: call() for name, call in calls.items()}
    flow.eval_mode = "xla"
    for name, call in calls.items():
        tf.nest.map_structure(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
            call(), expected[name])
    # 1000 rows -> 16 blocks of 63, rounded up to 64 (a 16th of 64; 24 padding rows);
    # a batch under two blocks runs whole
    assert {key[2] for key in flow._compiled} == {64}
    flow.log_prob(x[:100], c[:100])
    assert {key[2] for key in flow._compiled} == {64, None}
    np.testing.assert_allclose(flow.sample(1000, context=c, seed=5),
                               flow.forward(flow._base_sample(1000, tf.constant(5), 1.0), c),
                               rtol=1e-6)


@pytest.mark.parametrize("recipe_kw, dim, rows", [
    ({"autoregressive": True}, 8, 64),      # 64 rows a block for 8-D: 16 blocks of 63 -> 64
    ({"autoregressive": True}, 16, 32),     # fewer for wider rows: 32 blocks of 32 (24 padding)
    ({}, 8, 64),                            # coupling layers from COUPLING_BLOCKS_FROM_DIM on
])
def test_spline_flows_evaluate_in_blocks_of_fewer_rows_for_wider_rows(monkeypatch, recipe_kw,
                                                                      dim, rows):
    from kerasflows.layers import splines
    monkeypatch.setattr(splines, "MIN_BLOCK_ROWS", 4)
    keras.utils.set_random_seed(0)
    flow = M.NSF(dim, num_layers=2, hidden_units=(16,), bins=4, **recipe_kw)
    perturb_weights(flow, 0.3)
    x = np.random.default_rng(0).normal(size=(1000, dim)).astype("float32")
    flow.eval_mode = "eager"
    eager = flow.log_prob(x), flow.forward_and_log_det(x)
    flow.eval_mode = "xla"
    whole = flow.log_prob(x), flow.forward_and_log_det(x)      # under two blocks of 8192 rows
    assert {key[2] for key in flow._compiled} == {None}
    monkeypatch.setattr(kerasflows.eval_calls, "EVAL_BLOCK_ROWS", 100)
    monkeypatch.setattr(splines, "SPLINE_BLOCK_VALUES", 512)     # 64 rows of 8-D, 32 of 16-D
    blocks = flow.log_prob(x), flow.forward_and_log_det(x)
    assert {key[2] for key in flow._compiled} == {None, rows}
    # the whole batch's numbers (up to XLA's fusion of the two shapes: 3e-6
    # relative at most seen); eager differs from either by XLA's rounding,
    # amplified by sequential sampling
    tf.nest.map_structure(lambda a, b: np.testing.assert_allclose(a, b, rtol=5e-6, atol=2e-5),
                          blocks, whole)
    tf.nest.map_structure(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-4),
                          blocks, eager)
    np.testing.assert_allclose(flow.sample(1000, seed=5),
                               flow.forward(flow._base_sample(1000, tf.constant(5), 1.0)),
                               rtol=1e-5, atol=1e-5)


def test_graphs_run_in_blocks_only_where_a_layer_asked_for_fewer_rows(monkeypatch):
    from kerasflows.layers import splines
    monkeypatch.setattr(kerasflows.eval_calls, "EVAL_BLOCK_ROWS", 100)
    monkeypatch.setattr(splines, "SPLINE_BLOCK_VALUES", 512)     # 32 rows of 16-D
    monkeypatch.setattr(splines, "MIN_BLOCK_ROWS", 4)
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(1000, 16)).astype("float32")
    spline = M.NSF(16, num_layers=2, hidden_units=(16,), bins=4, autoregressive=True)
    affine = M.RealNVP(16, num_layers=2, hidden_units=(16,))
    for flow in (spline, affine):
        perturb_weights(flow, 0.3)
        flow.eval_mode = "eager"
        expected = flow.log_prob(x)
        flow.eval_mode = "graph"          # the default
        np.testing.assert_allclose(flow.log_prob(x), expected, rtol=1e-5, atol=1e-5)
    assert [key[2] for key in spline._compiled] == [32]      # 32 blocks of 32 rows (24 padding)
    assert [key[2] for key in affine._compiled] == [None]    # asked for the most: whole
    # Any other batch size from two blocks on runs in the same 32-row blocks
    # (the last one padded), through the same graph: no trace per batch size.
    spline.eval_mode = "eager"
    expected = [spline.log_prob(x[:n]) for n in (999, 700, 65, 63)]
    spline.eval_mode = "graph"
    for n, want in zip((999, 700, 65, 63), expected):
        np.testing.assert_allclose(spline.log_prob(x[:n]), want, rtol=1e-5, atol=1e-5)
    assert sorted(key[2] or 0 for key in spline._compiled) == [0, 32]   # 63 rows: whole
    blocked = next(f for key, f in spline._compiled.items() if key[2])
    assert len(blocked._list_all_concrete_functions()) == 1


def test_the_layer_that_asks_for_the_fewest_rows_sets_the_blocks(monkeypatch):
    from kerasflows.layers import splines
    monkeypatch.setattr(kerasflows.eval_calls, "EVAL_BLOCK_ROWS", 100)
    monkeypatch.setattr(splines, "SPLINE_BLOCK_VALUES", 256)
    monkeypatch.setattr(splines, "MIN_BLOCK_ROWS", 4)
    flow = kerasflows.Flow([L.ActNorm(), L.SplineAutoregressive(bins=4, hidden_units=(8,)),
                            L.Permute()], event_dim=8)
    assert [l.eval_block_rows(100) for l in flow.flow_layers] == [100, 32, 100]
    flow.eval_mode = "xla"
    flow.log_prob(np.zeros((320, 8), "float32"))
    assert [key[2] for key in flow._compiled] == [32]


@pytest.mark.parametrize("make", [
    # 2-D spline coupling layers between permutations, which allow blocks: one layer decides
    lambda: M.NSF(2, num_layers=2, hidden_units=(8,), bins=4),
    lambda: kerasflows.Flow([L.ContinuousFlow(hidden_units=(8,))], event_dim=2),
])
def test_layers_that_do_not_allow_blocks_run_whole_batches(monkeypatch, make):
    monkeypatch.setattr(kerasflows.eval_calls, "EVAL_BLOCK_ROWS", 64)
    flow = make()
    flow.eval_mode = "xla"
    flow.log_prob(np.zeros((300, 2), "float32"))
    assert [key[2] for key in flow._compiled] == [None]


def test_student_t_base_density_and_samples_are_student_t():
    from distribution_checks import ks_pvalue, student_t, t_cdf
    from kerasflows.flow import STUDENT_T_INITIAL_DF
    f = kerasflows.Flow([L.ElementwiseAffine()], event_dim=3, base="student_t")
    np.testing.assert_allclose(f.base_df, [STUDENT_T_INITIAL_DF] * 3, rtol=1e-6)
    df = np.array([1.5, 4.0, 30.0], np.float32)
    f.base_log_df.assign(np.log(df))
    np.testing.assert_allclose(f.base_df, df, rtol=1e-6)
    x = f.sample(20_000, seed=0).numpy()          # the identity layer: base draws
    for d in range(3):
        assert ks_pvalue(x[:, d], t_cdf(df[d])) > 1e-3, d
    assert np.abs(x[:, 0]).max() > 50, "heavy tails (df 1.5)"
    t_log_prob = lambda v: student_t(df).log_prob(v.astype(np.float64)).numpy().sum(1)  # noqa: E731
    np.testing.assert_allclose(f.log_prob(x[:100]), t_log_prob(x[:100]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(f.log_prob(x[:100]), f.distribution.log_prob(x[:100]),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(f.sample(50, seed=3), f.sample(50, seed=3))
    assert not np.array_equal(f.sample(50, seed=3), f.sample(50, seed=4))
    np.testing.assert_allclose(f.sample(50, seed=3, temperature=2.0),
                               2.0 * f.sample(50, seed=3).numpy(), rtol=1e-6)
    # far outside the data the log-density falls like a power of |x|, and stays finite
    far = np.array([[1e6, 0.0, 0.0], [0.0, 0.0, 1e30], [-3e38, 3e38, 1e-30]], np.float32)
    np.testing.assert_allclose(f.log_prob(far), t_log_prob(far), rtol=1e-5)
    with tf.GradientTape() as tape:
        z = tf.constant(np.concatenate([far, np.zeros((1, 3), np.float32)]))
        tape.watch(z)
        log_p = f.log_prob(z)
    grad = tape.gradient(log_p, z).numpy()
    z64, df64 = z.numpy().astype(float), df.astype(float)
    np.testing.assert_allclose(grad, -(df64 + 1) * z64 / (df64 + z64 * z64), rtol=1e-4,
                               atol=1e-35)
    assert np.all(np.isfinite(grad)) and np.all(grad[3] == 0), grad
    # through a nonlinear flow, sample_and_log_prob agrees with log_prob
    g = M.RealNVP(3, num_layers=2, hidden_units=(8,), base="student_t")
    perturb_weights(g, 0.3, seed=1)
    g.base_log_df.assign(np.log(df))
    for mode in ("graph", "xla"):
        g.eval_mode = mode
        s, log_p = g.sample_and_log_prob(200, seed=2)
        np.testing.assert_allclose(log_p, g.log_prob(s), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g.sample(200, seed=2), s, rtol=1e-5, atol=1e-5)


def test_student_t_base_samples_inside_a_function_compiled_with_xla():
    """XLA has no kernel for TensorFlow's stateless gamma: a Student-t flow could not
    sample in a caller's jit_compile=True function (a VAE posterior, VariationalFlow
    compiled with XLA). There its chi-squared variates are TFP's Gamma sampler's:
    still Student-t draws, with log q that of the samples and gradients to df."""
    from distribution_checks import ks_pvalue, t_cdf
    f = kerasflows.Flow([L.ElementwiseAffine()], event_dim=3, base="student_t")
    df = np.array([1.5, 4.0, 30.0], np.float32)
    f.base_log_df.assign(np.log(df))

    @tf.function(jit_compile=True)
    def draw(seed):
        with tf.GradientTape() as tape:
            x, log_q = f.sample_and_log_prob(20_000, seed=seed)
            loss = tf.reduce_mean(x[:, 0] ** 2 / (1.0 + x[:, 0] ** 2))
        return x, log_q, tape.gradient(loss, f.base_log_df)
    x, log_q, grad = (t.numpy() for t in draw(0))
    for d in range(3):
        assert ks_pvalue(x[:, d], t_cdf(df[d])) > 1e-3, d
    np.testing.assert_allclose(log_q, f.log_prob(x), rtol=1e-5, atol=1e-5)
    assert np.isfinite(grad).all() and grad[0] != 0 and np.all(grad[1:] == 0), grad
    assert not np.array_equal(x, draw(1)[0].numpy())


def test_student_t_base_is_accurate_in_float32_at_many_degrees_of_freedom():
    """The normalising constant lgamma((df+1)/2) - lgamma(df/2), taken as a plain difference,
    cancels in float32: 7e-3 nats off at df = 1e5 and 0.9 at 1e6 (the learned df grows
    without bound on light-tailed data)."""
    from distribution_checks import student_t
    df = np.array([0.7, 30.0, 1e4, 1e5, 1e6], np.float32)
    f = kerasflows.Flow([L.ElementwiseAffine()], event_dim=5, base="student_t")
    f.base_log_df.assign(np.log(df))
    x = np.array([[0.0] * 5, [0.5, -1.0, 2.0, -3.0, 0.1]], np.float32)
    exact = student_t(f.base_df.astype(np.float64)).log_prob(x.astype(np.float64)).numpy().sum(1)
    np.testing.assert_allclose(f.log_prob(x), exact, rtol=0, atol=2e-5)
    with tf.GradientTape() as tape:
        log_p = tf.reduce_sum(f.log_prob(x))
    assert np.all(np.isfinite(tape.gradient(log_p, f.base_log_df)))


def test_student_t_base_learns_the_tails_and_is_saved(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_t(2.0, (8192, 2)).astype("float32")
    f = kerasflows.Flow([L.ElementwiseAffine()], event_dim=2, base="student_t")
    assert "base_log_df" in [w.name for w in f.trainable_weights]
    f.compile(optimizer=keras.optimizers.Adam(0.05))       # XLA-compiled step ("auto")
    f.fit(x, batch_size=512, epochs=15, verbose=0)
    assert np.all(f.base_df < 3.0) and np.all(f.base_df > 1.3), f.base_df
    f.save(tmp_path / "f.keras")
    g = keras.models.load_model(tmp_path / "f.keras")
    np.testing.assert_array_equal(g.base_df, f.base_df)
    np.testing.assert_array_equal(g.log_prob(x[:5]), f.log_prob(x[:5]))
    np.testing.assert_array_equal(g.sample(5, seed=1), f.sample(5, seed=1))


@pytest.mark.parametrize("autoregressive", [False, True])
def test_spline_flow_over_a_student_t_base_is_finite_to_float32s_end(autoregressive):
    """A Gaussian base's -z^2 / 2 is -inf from |z| = 2.6e19 (test_conformance); the
    Student-t base's log-density falls like -(df + 1) log|z|, and the splines' identity
    tails hand it z = x out there."""
    f = M.NSF(2, num_layers=2, hidden_units=(8,), autoregressive=autoregressive,
              base="student_t")
    perturb_weights(f, 0.3, seed=3)
    far = np.array([[1e25, 0.0], [1e30, -1e30], [3e38, -3e38], [-1e10, 2.0]], np.float32)
    lp = f.log_prob(far).numpy()
    assert np.all(np.isfinite(lp)) and np.all(lp < -40), lp
    # the gradients too, short of inputs that overflow the conditioner networks
    # (1e38 and more, where the affine recipes give NaN even for log_prob)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(f(far[[0, 1, 3]]))
    grads = tape.gradient(loss, f.trainable_weights)
    assert all(np.all(np.isfinite(g.numpy())) for g in grads if g is not None)


def test_student_t_base_with_df_below_1_is_finite_to_float32s_end():
    """Heavy tails learn df < 1, where |z| / sqrt(df) overflowed float32 near its largest
    value: log p0 was -inf and its gradients NaN. Compared with TFP's StudentT in float64,
    values and gradients (in z and in log df)."""
    import tensorflow_probability as tfp
    f = kerasflows.Flow([L.ElementwiseAffine()], event_dim=3, base="student_t")
    log_df = np.log([0.7, 0.05, 3.0])
    f.base_log_df.assign(log_df)
    z = np.array([[3e38, -3e38, 3e38], [1e38, -1e38, 2e19], [1.5, -0.2, 0.0],
                  [0.9, -0.3, 1.8], [1e-30, 4.0, -40.0]], np.float32)
    zt = tf.constant(z)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(zt)
        lp = f.base_log_prob(zt)
    grads = [tape.gradient(lp, zt).numpy(), tape.gradient(lp, f.base_log_df).numpy()]
    z64, log_df64 = tf.constant(z, tf.float64), tf.Variable(log_df)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z64)
        want = tf.reduce_sum(tfp.distributions.StudentT(
            tf.exp(log_df64), np.float64(0), np.float64(1)).log_prob(z64), -1)
    want_grads = [tape.gradient(want, z64).numpy(), tape.gradient(want, log_df64).numpy()]
    assert np.all(np.isfinite(lp.numpy())), lp
    np.testing.assert_allclose(lp, want, rtol=1e-6, atol=1e-5)
    for got, expected in zip(grads, want_grads):
        assert np.all(np.isfinite(got)), got
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-30)


def test_a_flow_trained_inside_another_model_warns_of_layers_not_initialised():
    # an outer model's fit never initialised the flow's ActNorm: it trained from its
    # identity start, and a later Flow.fit initialised it over the trained weights
    import warnings
    x = np.random.default_rng(0).normal(5.0, 3.0, size=(64, 3)).astype("float32")
    flow = M.RealNVP(2, num_layers=2, hidden_units=(8,), standardize=True)
    inputs = keras.Input((3,))
    log_p = flow(keras.layers.Dense(2)(inputs))
    model = keras.Model(inputs, log_p)
    nll = lambda _, log_p: -keras.ops.mean(log_p)
    model.compile(optimizer="adam", loss=nll, jit_compile=False)
    y = np.zeros(64, "float32")
    with pytest.warns(UserWarning, match=r"not yet initialised from data.*flow.initialize") as w:
        model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    # blamed on the fit line, not on flow.py under Keras' frames
    assert {(r.filename, r.lineno) for r in w if "initialised" in str(r.message)} == {
        (__file__, sys._getframe().f_lineno - 3)}
    flow.initialize(model.layers[1](x))                 # once initialised: no warning
    model.compile(optimizer="adam", loss=nll, jit_compile=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, y, epochs=1, batch_size=32, verbose=0)
        fresh = M.RealNVP(2, num_layers=2, hidden_units=(8,), standardize=True)
        fresh.compile(optimizer="adam", jit_compile=False)
        fresh.fit(x[:, :2], epochs=1, batch_size=32, verbose=0)   # fit initialises first


class PosteriorVAE(keras.Model):
    """An encoder, a conditional flow q(z | x) sampled once per row in call, a decoder."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.encoder = keras.layers.Dense(4)
        self.decoder = keras.layers.Dense(6)
        self.posterior = M.RealNVP(2, 2, (8,), context_dim=4)

    def call(self, x, training=False):
        h = self.encoder(x)
        z, log_q = self.posterior.sample_and_log_prob(tf.shape(h)[0], context=h,
                                                      training=training)
        self.add_loss(tf.reduce_mean(log_q + 0.5 * tf.reduce_sum(z * z, -1)))
        return self.decoder(z)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_a_flow_posterior_samples_a_tensor_n_inside_model_fit(jit_compile):
    # a VAE's q(z | x): n = tf.shape(h)[0], not known when fit traces, and a short last batch
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(40, 6)).astype("float32")
    model = PosteriorVAE()
    model.compile(optimizer="adam", loss="mse", jit_compile=jit_compile)
    before = [w.numpy() for w in model.posterior.trainable_weights]
    loss = model.fit(x, x, epochs=2, batch_size=16, verbose=0).history["loss"]
    assert np.all(np.isfinite(loss)), loss
    assert any(not np.allclose(w.numpy(), b)
               for w, b in zip(model.posterior.trainable_weights, before))

    # in a traced function: [n, C] taken as is, [1, C] repeated n times
    flow = model.posterior
    @tf.function(autograph=False)
    def draw(h):
        n = tf.shape(h)[0]
        x, log_p = flow.sample_and_log_prob(n, context=h, seed=3)
        shared = flow.sample(n, context=h[:1], seed=3)
        return x, log_p, shared
    h = np.random.default_rng(1).normal(size=(5, 4)).astype("float32")
    x_s, log_p, shared = draw(h)
    want_x, want_log_p = flow.sample_and_log_prob(5, context=h, seed=3)
    np.testing.assert_allclose(x_s, want_x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(log_p, want_log_p, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(shared, flow.sample(5, context=h[:1], seed=3),
                               rtol=1e-5, atol=1e-6)
    for bad in (2.0, -1, None):     # Python values are still checked, by name
        with pytest.raises(ValueError, match=r"`n` must be an integer >= 0"):
            flow.sample(bad, context=h[:1])
    # a symbolic keras.Input's batch size is None: the message says where n is a tensor
    symbolic = keras.Input((4,))
    with pytest.raises(ValueError, match=r"n=None .*on a symbolic keras.Input, whose batch "
                       r"size is None, sample in a layer's or a subclassed model's call"):
        flow.sample(keras.ops.shape(symbolic)[0], context=symbolic)
    with pytest.raises(ValueError, match=r"`n` must be an integer >= 0.*float"):
        tf.function(lambda n: flow.sample(n, context=h[:1]), autograph=False,
                    input_signature=[tf.TensorSpec([], "float32")]).get_concrete_function()


@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
def test_a_flow_of_a_dtype_that_is_not_a_float_is_refused(dtype):
    # it was built, then log_prob failed deep in TF ("x and y must have the same dtype")
    for make in (lambda: M.RealNVP(2, num_layers=1, hidden_units=(4,), dtype=dtype),
                 lambda: kerasflows.Flow([L.Permute(dtype=dtype)], 2, dtype=dtype)):
        with pytest.raises(ValueError, match=rf"float dtype .*Received: dtype='{dtype}'"):
            make()
    # a layer refuses it itself, by name: the spline layers and BatchNorm raised NumPy's
    # "data type ... not inexact", and a flow of other layers advised taking their dtype
    for make in (lambda: M.NSF(2, num_layers=1, hidden_units=(4,), dtype=dtype),
                 lambda: L.SplineAutoregressive(dtype=dtype), lambda: L.BatchNorm(dtype=dtype),
                 lambda: L.ActNorm(dtype=dtype)):
        with pytest.raises(ValueError, match=rf"^(SplineCoupling|SplineAutoregressive|BatchNorm|"
                                             rf"ActNorm): a flow layer computes in a float "
                                             rf"dtype .*Received: dtype='{dtype}'"):
            make()


def test_sample_refuses_counts_beyond_int32_naming_n(flow):
    # 2**32 + 3 wrapped through int32 to 3 rows; 2**31 gave a bare InvalidArgumentError
    for n in (2**31, 2**32 + 3, tf.constant(2**32 + 3, "int64")):
        for draw in (flow.sample, flow.sample_and_log_prob):
            with pytest.raises(ValueError, match=r"`n` must be an integer < 2\*\*31.*Received: n="):
                draw(n, seed=0)


@pytest.mark.parametrize("temperature", [True, "1", None, np.array([1.0, 2.0]), 0, -1.0,
                                         float("inf")])
def test_sample_refuses_bad_temperatures_naming_them(flow, temperature):
    # a string or array gave bare Python/NumPy errors; True was taken as 1
    with pytest.raises(ValueError, match=r"`temperature` must be finite and > 0\. Received: "
                                         r"temperature="):
        flow.sample(3, seed=0, temperature=temperature)


@pytest.mark.parametrize("dtype", ["int32", "bool", "string"])
def test_a_conditioner_dtype_that_is_not_a_float_is_refused(dtype):
    # int32 was taken (int32 weights, a finite log_prob) and fit failed with "No gradients
    # provided"; "string" failed at the first call with a Cast error
    with pytest.raises(ValueError, match=rf"`conditioner_dtype` .*float .*Received: "
                                         rf"conditioner_dtype='{dtype}'"):
        L.AffineCoupling(hidden_units=(4,), conditioner_dtype=dtype)


@pytest.mark.parametrize("make, name", [
    (lambda v: L.AffineCoupling(max_log_scale=v), "max_log_scale"),
    (lambda v: L.ContinuousFlow(time=v), "time"),
    (lambda v: L.BatchNorm(epsilon=v), "epsilon"),
    (lambda v: L.BatchNorm(momentum=v), "momentum"),
    (lambda v: L.ClassEmbedding(3, stddev=v), "stddev")])
def test_layer_number_settings_refuse_bools_and_strings(make, name):
    """float() took True as 1.0 and "3" as 3.0, where sample(temperature=) and
    train_flow(learning_rate=) refuse them."""
    for bad in (True, np.True_, "0.5", np.array([0.5, 0.5])):
        with pytest.raises(ValueError, match=rf"`{name}` must be a finite number .*Received: "
                                             rf"{name}="):
            make(bad)
    for good in (0.5, np.float32(0.5), np.float64(0.5)):
        assert getattr(make(good), name) == pytest.approx(0.5)


def test_a_layer_used_twice_stays_tied_through_config_clone_save_and_tabulate(tmp_path):
    """Flow([a, Permute(), a]) shares a's weights; from_config untied them (8 weights
    for 4), so clone_model + set_weights and tabulate (which copies through the
    config) failed on a flow load_model gave back tied."""
    a = L.AffineCoupling(hidden_units=(4,))
    flow = kerasflows.Flow([a, L.Permute("reverse"), a], event_dim=2)
    flow.build((None, 2))
    perturb_weights(flow, 0.3)
    x = np.random.default_rng(0).normal(size=(16, 2)).astype("float32")
    want = flow.log_prob(x).numpy()
    assert flow.get_config()["layers"][2] == {"same_as": 0}
    copies = [kerasflows.Flow.from_config(flow.get_config()), keras.models.clone_model(flow)]
    flow.save(tmp_path / "tied.keras")
    copies.append(keras.models.load_model(tmp_path / "tied.keras"))
    for copy in copies:
        assert copy.flow_layers[0] is copy.flow_layers[2] and len(copy.weights) == 4
        copy.set_weights(flow.get_weights())
        np.testing.assert_allclose(copy.log_prob(x), want, rtol=1e-6, atol=1e-6)
    table, names = kerasflows.tabulate(copies[-1])
    assert names and table.flow_layers[0] is table.flow_layers[2]
    np.testing.assert_allclose(table.log_prob(x), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make", [
    lambda dtype: L.AffineCoupling(hidden_units=(8,), dtype=dtype),
    lambda dtype: L.SplineCoupling(hidden_units=(8,), dtype=dtype),
    lambda dtype: L.MaskedAutoregressive(hidden_units=(8,), dtype=dtype),
    lambda dtype: L.InverseAutoregressive(hidden_units=(8,), dtype=dtype),
    lambda dtype: L.SplineAutoregressive(hidden_units=(8,), dtype=dtype)],
    ids=["affine", "spline", "maf", "iaf", "spline_ar"])
@pytest.mark.parametrize("dtype, fed", [("float64", "float32"), ("mixed_float16", "float16")])
def test_a_layers_bijector_refuses_a_tensor_of_another_dtype(make, dtype, fed):
    """The conditioners' outputs were cast to the input's dtype: a float64 layer's
    bijector computed a float32 tensor in float32, a mixed layer's a float16 one in
    float16 (log-dets 3e-2 off), where a flow's view and TFP's bijectors refuse it.
    The bijector now holds the layer's dtype, as TFP's bijectors hold theirs."""
    layer = make(dtype)
    layer.ensure_built(3)
    x = np.random.default_rng(0).normal(size=(4, 3))
    b = layer.bijector()
    own = tf.constant(x, layer.compute_dtype)
    want = b.inverse(own)
    assert want.dtype == layer.compute_dtype                  # its own dtype: taken
    # NumPy arrays (float64 by default) and lists are converted to it, as TFP's own
    # bijectors and ActNorm's convert them (a first version of the check refused them)
    for given in (x, x.tolist(), x.astype(fed)):
        got = b.inverse(given)
        assert got.dtype == layer.compute_dtype
        np.testing.assert_allclose(got, want, rtol=1e-2 if given is not x else 1e-6, atol=1e-2)
    for call in (b.forward, b.inverse):
        with pytest.raises((TypeError, ValueError), match=rf"{layer.compute_dtype}.*{fed}|"
                                                          rf"{fed}.*{layer.compute_dtype}"):
            call(tf.constant(x, fed))


def test_true_or_false_options_refuse_strings_that_read_as_true():
    """"no" and "False" are truthy: trace returned log-dets, dequantized_dataset shuffled,
    make_train_step compiled, check_flow_layer checked the config."""
    from kerasflows.dequantization import dequantized_dataset
    from kerasflows.testing import check_flow_layer
    from kerasflows.training import make_train_step
    flow = M.RealNVP(2, num_layers=1, hidden_units=(4,))
    z = np.zeros((3, 2), np.float32)
    for call, name in [(lambda v: flow.trace(z, return_log_dets=v), "return_log_dets"),
                       (lambda v: flow.trace_inverse(z, return_log_dets=v), "return_log_dets"),
                       (lambda v: dequantized_dataset(np.zeros((4, 2)), shuffle=v), "shuffle"),
                       (lambda v: make_train_step(flow, keras.optimizers.Adam(), jit_compile=v),
                        "jit_compile"),
                       (lambda v: check_flow_layer(L.AffineCoupling(hidden_units=(4,)), 2,
                                                   check_config=v), "check_config")]:
        with pytest.raises(ValueError, match=rf"`{name}` must be True or False. Received: "
                                             rf"{name}='no'"):
            call("no")
    assert len(flow.trace(z, return_log_dets=np.bool_(True))) == 2
