"""What is special to `SplineCoupling`, `SplineAutoregressive` and `SplineKnots`.

The conformance suite runs `check_flow_layer` on both layers in float64;
here the float32 cases, agreement with `tfb.RationalQuadraticSpline` built
from the same knots, identity at initialisation and in the tails, one
conditioner pass per direction. (Finite outputs and gradients far outside
the bound: `test_conformance.py`, for every layer.)
(XLA training of NSF flows is covered by test_training.py.)
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from kerasflows.layers import SplineAutoregressive, SplineCoupling
from kerasflows.layers.spline_knots import BATCH_INNER_MIN_DIMS, SplineKnots
from kerasflows.testing import check_flow_layer, perturb_weights
from test_autoregressive import batch, count_conditioner_calls

tfb = tfp.bijectors
LAYERS = {"coupling": SplineCoupling, "autoregressive": SplineAutoregressive}
BOUND = 3.0


def make(name, dim, ctx=None, dtype="float64", perturb=0.5, **kwargs):
    layer = LAYERS[name](bins=5, bound=BOUND, hidden_units=(16,), context_dim=ctx,
                         dtype=dtype, **kwargs)
    layer.ensure_built(dim)
    if perturb:
        perturb_weights(layer, perturb, seed=2)
    return layer


def conditioner(layer):
    return layer.net if isinstance(layer, SplineCoupling) else layer.made


# Completes the conformance suite's float64 cases (see test_autoregressive.py).
# (The eager Jacobian of the sequential autoregressive forward is slow: no d5 there.)
# Coupling at 16 dimensions (8 transformed) and autoregressive at 8: the layout with
# the points' dimensions innermost (`spline_knots.BATCH_INNER_MIN_DIMS`).
@pytest.mark.parametrize("name,dim,ctx,dtype", [
    ("coupling", 3, 2, "float32"), ("coupling", 5, None, "float32"),
    ("coupling", 3, None, "float64"), ("autoregressive", 3, 2, "float32"),
    ("autoregressive", 3, None, "float64"), ("coupling", 16, None, "float64"),
    ("coupling", 16, 2, "float32"), ("autoregressive", 8, None, "float64"),
    ("autoregressive", 8, 2, "float32")])
def test_check_flow_layer(name, dim, ctx, dtype):
    keras.utils.set_random_seed(11)     # the same layer whatever ran before in this process
    layer = LAYERS[name](bins=6, bound=BOUND, hidden_units=(16,), context_dim=ctx, dtype=dtype)
    report = check_flow_layer(layer, dim, context_dim=ctx, perturb=0.3)
    assert report["logdet_error"] <= (1e-6 if dtype == "float64" else 1e-3)


def test_knots_from_raw_parameters():
    knots = SplineKnots(bins=4, bound=2.0, min_bin_width=0.05, min_bin_height=0.1, min_slope=0.2)
    raw = tf.constant(np.random.default_rng(0).normal(0, 30, (6, 11)))
    widths, heights, slopes = (t.numpy() for t in knots.knots(raw))
    np.testing.assert_allclose(widths.sum(-1), 4.0)
    np.testing.assert_allclose(heights.sum(-1), 4.0)
    assert widths.min() >= 4.0 * 0.05 - 1e-12 and heights.min() >= 4.0 * 0.1 - 1e-12
    assert slopes.shape == (6, 3) and slopes.min() >= 0.2
    w0, h0, s0 = (t.numpy() for t in knots.knots(tf.zeros([11], "float64")))
    np.testing.assert_allclose(w0, 1.0, atol=1e-15)
    np.testing.assert_allclose(h0, 1.0, atol=1e-15)
    np.testing.assert_allclose(s0, 1.0, atol=1e-15)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("params_first", [False, True])
@pytest.mark.parametrize("n", [3, BATCH_INNER_MIN_DIMS, 12])
def test_transform_matches_tfp_in_both_layouts(n, params_first, inverse):
    """`transform`'s values and gradients (the training path) equal TFP's spline on
    the same knots, below and from `BATCH_INNER_MIN_DIMS` transformed dimensions
    (the two layouts of the kernel), inside and outside the bound."""
    knots = SplineKnots(bins=5, bound=BOUND)
    rng = np.random.default_rng(n)
    raw = tf.constant(rng.normal(0, 1.5, (7, n, 14)))          # [batch, n, params]
    v = tf.constant(rng.normal(0, 2.0, (7, n)))
    weights = tf.constant(rng.normal(size=(7, n)))
    assert np.mean(np.abs(v) > BOUND) > 0.05                   # some points in the tails

    def ours(raw, v):
        params = tf.transpose(raw, [0, 2, 1]) if params_first else raw
        return knots.transform(params, v, inverse=inverse, params_first=params_first)

    def reference(raw, v):
        spline = tfb.RationalQuadraticSpline(*knots.knots(raw), range_min=-BOUND)
        if inverse:
            return spline.inverse(v), -spline.forward_log_det_jacobian(spline.inverse(v), 0)
        return spline.forward(v), spline.forward_log_det_jacobian(v, 0)

    results = []
    for fn in (ours, tf.function(ours, jit_compile=True), reference):
        with tf.GradientTape() as tape:
            tape.watch([raw, v])
            out, log_det = fn(raw, v)
            log_det = tf.reduce_sum(log_det, -1) if log_det.shape.rank == 2 else log_det
            loss = tf.reduce_sum(weights * out) + tf.reduce_sum(log_det)
        results.append([out, log_det, *tape.gradient(loss, [raw, v])])
    for got in results[:2]:
        for a, b in zip(got, results[2]):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-9)


def oriented(spline, direction):
    """TFP's spline as the layer's forward (`spline_direction="forward"`), else inverted."""
    return spline if direction == "forward" else tfb.Invert(spline)


@pytest.mark.parametrize("direction", ["inverse", "forward"])
@pytest.mark.parametrize("ctx", [None, 2])
def test_coupling_matches_tfp_spline_from_same_knots(ctx, direction):
    layer = make("coupling", 5, ctx, spline_direction=direction)
    x, c = batch(5, ctx, scale=2.0)
    x0, x1 = x[:, :2], x[:, 2:]
    h = x0 if c is None else tf.concat([x0, c], -1)
    widths, heights, slopes = layer.knots.knots(tf.reshape(layer.net(h), [8, 3, 14]))
    ref = oriented(tfb.RationalQuadraticSpline(widths, heights, slopes, range_min=-BOUND),
                   direction)
    y, fld = layer.forward_and_log_det(x, context=c)
    np.testing.assert_array_equal(y[:, :2], x0)
    np.testing.assert_allclose(y[:, 2:], ref.forward(x1), atol=1e-12)
    np.testing.assert_allclose(fld, ref.forward_log_det_jacobian(x1, event_ndims=1), atol=1e-12)
    z, ild = layer.inverse_and_log_det(x, context=c)
    np.testing.assert_allclose(z[:, 2:], ref.inverse(x1), atol=1e-12)
    np.testing.assert_allclose(ild, ref.inverse_log_det_jacobian(x1, event_ndims=1), atol=1e-12)
    bij = layer.bijector(context=c)  # the public TFP view gives the same numbers
    np.testing.assert_allclose(bij.forward(x), y, atol=1e-12)
    np.testing.assert_allclose(bij.inverse_log_det_jacobian(x, event_ndims=1), ild, atol=1e-12)
    assert np.max(np.abs(fld)) > 1e-2


@pytest.mark.parametrize("direction", ["inverse", "forward"])
@pytest.mark.parametrize("ctx", [None, 2])
def test_autoregressive_matches_tfp_spline_from_same_knots(ctx, direction):
    layer = make("autoregressive", 4, ctx, spline_direction=direction)
    x, c = batch(4, ctx, scale=2.0)
    spline_at = lambda y: oriented(layer.knots.bijector(layer.made(y, context=c)), direction)
    z, ild = layer.inverse_and_log_det(x, context=c)  # one pass: knots from x itself
    np.testing.assert_allclose(z, spline_at(x).inverse(x), atol=1e-12)
    np.testing.assert_allclose(ild, spline_at(x).inverse_log_det_jacobian(x, 1), atol=1e-12)
    x2, fld = layer.forward_and_log_det(z, context=c)  # knots from the output x2
    np.testing.assert_allclose(x2, x, atol=1e-10)
    np.testing.assert_allclose(fld, spline_at(x2).forward_log_det_jacobian(z, 1), atol=1e-12)
    assert np.max(np.abs(ild)) > 1e-2


def _kernel_inputs(bins, bound, seed, dtype="float64"):
    """Bins-first raw parameters `[3*bins-1, 2, 60]` (some large, some all equal) and
    points in, on the knots of, and outside `[-bound, bound]`."""
    rng = np.random.default_rng(seed)
    p = rng.normal(0, 2, (3 * bins - 1, 2, 60))
    p[:, :, :5] *= 25                                   # near one-hot softmaxes
    p[:, :, 5:8] = 0.0                                  # the identity
    v = rng.uniform(-1.2 * bound, 1.2 * bound, (2, 60))
    v[:, 8:12] = [-bound, bound, 0.0, -bound + 2 * bound / bins]   # knots and the ends
    return tf.constant(p, dtype), tf.constant(v, dtype)


@pytest.mark.parametrize("bins", [2, 3, 8, 16])
@pytest.mark.parametrize("inverse", [False, True])
def test_unrolled_kernel_equals_kernel(bins, inverse):
    knots = SplineKnots(bins=bins, bound=2.5, min_bin_width=0.01, min_slope=0.05)
    p, v = _kernel_inputs(bins, 2.5, seed=bins)
    out, log_det = knots.kernel(p, v, inverse)
    out_u, log_det_u = knots.unrolled_kernel(p, v, inverse)
    np.testing.assert_allclose(out_u, out, rtol=0, atol=1e-12)
    np.testing.assert_allclose(log_det_u, log_det, rtol=0, atol=1e-10)
    assert np.max(np.abs(log_det)) > 0.5                 # a spline far from the identity
    # Compiled (XLA) in float32: the float32 `kernel`'s numbers, up to rounding.
    p32, v32 = tf.cast(p, "float32"), tf.cast(v, "float32")
    out_c, log_det_c = knots.compiled_kernel(inverse)(p32, v32)
    out_32, log_det_32 = knots.kernel(p32, v32, inverse)
    np.testing.assert_allclose(out_c, out_32, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(log_det_c, log_det_32, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("unrolled", [False, True])
def test_float32_inverse_is_accurate_next_to_a_steep_knot(unrolled):
    # Equal bins with interior slopes ~0.001, ~51, ~0.001: bin 1 rises from a flat left
    # knot to a steep right one, where the textbook root 2c / (-b - sqrt(b^2 - 4ac))
    # cancels (b < 0). The float32 inverse must match the float64 inverse of the same
    # float32 outputs to float32 rounding, allowing for the slope dy/dx: next to a flat
    # knot any float32 inverse is off by ~ulp(y) / slope. (With the textbook root
    # alone the error was 5.7 times this bound.)
    bins, bound = 4, 3.0
    knots = SplineKnots(bins=bins, bound=bound)
    n = 4001
    raw = np.zeros((3 * bins - 1, n))
    raw[2 * bins:] = np.array([-20.0, 50.0, -20.0])[:, None]
    x = np.linspace(-bound + 1e-3, bound - 1e-3, n)
    y, log_slope = knots.kernel(tf.constant(raw), tf.constant(x), inverse=False)
    y32 = tf.cast(y, "float32")
    run = knots.unrolled_kernel if unrolled else knots.kernel
    want, want_ld = run(tf.constant(raw), tf.cast(y32, "float64"), inverse=True)
    raw32 = tf.constant(raw, "float32")
    with tf.GradientTape() as tape:
        tape.watch([raw32, y32])
        got, got_ld = run(raw32, y32, inverse=True)
        loss = tf.reduce_sum(got) + tf.reduce_sum(got_ld)
    bound_x = 5e-7 * (1 + np.exp(-log_slope.numpy()))
    assert np.all(np.abs(got.numpy() - want.numpy()) < bound_x)
    # The log-slope changes fast next to a flat knot: compare it where the slope is > 0.05.
    away = log_slope.numpy() > -3
    assert np.max(np.abs(got_ld.numpy() - want_ld.numpy())[away]) < 1e-3
    assert all(np.all(np.isfinite(g.numpy())) for g in tape.gradient(loss, [raw32, y32]))


@pytest.mark.parametrize("unrolled", [False, True])
def test_float32_inverse_stays_in_its_bin_and_finite(unrolled):
    """Steep bins beside flat ones (large conditioner outputs): rounding put the root
    just outside [0, 1], and the log-det was a log of a negative number, NaN (65 of
    10^6 points for raw outputs ~N(0, 5^2), 1,017 for N(0, 10^2); on the shipped
    checkerboard flow, forward(inverse(x)) far out)."""
    bins, bound, n = 8, 5.0, 200_000
    knots = SplineKnots(bins=bins, bound=bound)
    rng = np.random.default_rng(1)
    raw = tf.constant(10.0 * rng.standard_normal((3 * bins - 1, n)), "float32")
    x = tf.constant(rng.uniform(-bound, bound, n), "float32")
    run = knots.unrolled_kernel if unrolled else knots.kernel
    y, _ = run(raw, x)
    back, log_det = run(raw, y, inverse=True)
    assert np.isfinite(back.numpy()).all() and np.isfinite(log_det.numpy()).all()
    # the float64 inverse of the same float32 y lies in the same bin, within a bin's size
    want, _ = run(tf.cast(raw, "float64"), tf.cast(y, "float64"), inverse=True)
    assert np.max(np.abs(back.numpy() - want.numpy())) < 2 * bound


@pytest.mark.parametrize("bins", [2, 3, 8, 16])
@pytest.mark.parametrize("inverse", [False, True])
def test_unrolled_kernel_with_slopes_read_on_demand(bins, inverse):
    # `raw_slopes` gets the index of each element's slopes; here it reads them from `p`.
    knots = SplineKnots(bins=bins, bound=2.5, min_bin_width=0.01, min_slope=0.05)
    p, v = _kernel_inputs(bins, 2.5, seed=bins + 1)
    asked = []

    def raw_slopes(index):
        asked.append(index)
        slopes = tf.transpose(p[2 * bins:], [1, 2, 0])       # [2, 60, bins - 1]
        return tf.gather(slopes, index, batch_dims=2)
    out, log_det = knots.unrolled_kernel(p[:2 * bins], v, inverse, raw_slopes=raw_slopes)
    want_out, want_log_det = knots.unrolled_kernel(p, v, inverse)
    np.testing.assert_allclose(out, want_out, rtol=0, atol=1e-12)
    np.testing.assert_allclose(log_det, want_log_det, rtol=0, atol=1e-12)
    assert len(asked) == 2 and all(a.dtype == tf.int32 for a in asked)
    assert all(0 <= int(tf.reduce_min(a)) and int(tf.reduce_max(a)) <= bins - 2 for a in asked)


@pytest.mark.parametrize("inverse", [False, True])
def test_compiled_table_kernel_equals_compiled_kernel_on_every_column(inverse):
    # A conditioner table for two splines of 6 bins (num_masked=1 in 3-D).
    from kerasflows.layers import MLP
    from kerasflows.layers.piecewise import PiecewiseLinear
    from kerasflows.testing import perturb_weights
    bins, n = 6, 2
    knots = SplineKnots(bins=bins, bound=3.0, min_slope=0.05)
    p = knots.params_per_dim
    keras.utils.set_random_seed(5)
    net = MLP(n * p, (16, 16), "relu", zero_init=False)
    net.build((None, 1))
    perturb_weights(net, 1.0, seed=2)
    table = PiecewiseLinear.from_mlp(net)
    rng = np.random.default_rng(3)
    x0 = rng.uniform(-4, 4, (500, 1)).astype("float32")
    v = rng.uniform(-3.5, 3.5, (n, 500)).astype("float32")
    outputs = np.arange(n * p).reshape(n, p)
    everything = tf.reshape(table.columns(x0, outputs.T.ravel()), [p, n, -1])
    want = knots.compiled_kernel(inverse)(everything, v)
    sizes, piece = table.columns_and_pieces(x0, outputs[:, :2 * bins].T.ravel())
    for width in (table.pieces, 512):                   # unpadded and padded tables
        tables = table.row_tables(outputs[:, 2 * bins:].ravel(), pieces=width)
        got = knots.compiled_table_kernel(inverse)(tf.reshape(sizes, [2 * bins, n, -1]), piece,
                                                   x0[:, 0], v, *tables)
        for a, b in zip(got, want):      # float32, the table's products fused differently
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert np.max(np.abs(want[1])) > 0.3                 # splines far from the identity
    assert knots.compiled_table_kernel(inverse) is \
        SplineKnots(bins=bins, bound=3.0, min_slope=0.05).compiled_table_kernel(inverse)
    assert knots.compiled_table_kernel(inverse) is not knots.compiled_kernel(inverse)


def test_compiled_kernels_are_shared_by_equal_configurations():
    a, b = SplineKnots(bins=6, bound=3.0), SplineKnots(bins=6, bound=3.0)
    assert a.compiled_kernel(True) is b.compiled_kernel(True)
    assert a.compiled_kernel(True) is not a.compiled_kernel(False)
    assert a.compiled_kernel(True) is not SplineKnots(bins=6, bound=3.5).compiled_kernel(True)
    assert a.compiled_kernel(True) is not SplineKnots(bins=7, bound=3.0).compiled_kernel(True)
    # the shared function computes with the caller's configuration, not the first one's
    p, v = _kernel_inputs(6, 3.0, seed=1, dtype="float32")
    c = SplineKnots(bins=6, bound=3.0, min_slope=0.3)
    np.testing.assert_allclose(c.compiled_kernel(False)(p, v)[1], c.kernel(p, v)[1], atol=2e-4)
    assert np.max(np.abs(c.kernel(p, v)[1] - a.kernel(p, v)[1])) > 1e-2


@pytest.mark.parametrize("dtype,atol", [("float32", 1e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_zero_conditioner_output_is_identity(name, dtype, atol):
    layer = make(name, 3, ctx=2, dtype=dtype, perturb=0)
    x, c = batch(3, ctx=2, dtype=dtype, scale=1.5)
    for direction in ("forward_and_log_det", "inverse_and_log_det"):
        y, ld = getattr(layer, direction)(x, context=c)
        np.testing.assert_allclose(y, x, atol=atol)
        np.testing.assert_allclose(ld, 0.0, atol=atol)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_identity_tails_outside_bound(name):
    layer = make(name, 3, ctx=2)
    rng = np.random.default_rng(3)
    x = rng.uniform(BOUND, 4 * BOUND, (8, 3)) * rng.choice([-1.0, 1.0], (8, 3))
    if name == "coupling":
        x[:, 0] = rng.normal(size=8)  # the passed-through dimension may be anywhere
    x = tf.constant(x)
    c = batch(3, ctx=2)[1]
    for direction in ("forward_and_log_det", "inverse_and_log_det"):
        y, ld = getattr(layer, direction)(x, context=c)
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(ld, np.zeros(8))
    inside = tf.constant([[0.3, 0.5, -0.7]], "float64")
    assert np.max(np.abs(layer.forward_and_log_det(inside, context=c[:1])[0] - inside)) > 1e-3


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_one_pass_direction_runs_the_conditioner_once(name):
    layer = make(name, 4, ctx=2, dtype="float32")
    assert count_conditioner_calls(layer, conditioner(layer), "inverse_and_log_det") == 1
    if name == "coupling":
        assert count_conditioner_calls(layer, conditioner(layer), "forward_and_log_det") == 1


@pytest.mark.parametrize("kwargs", [
    {"bins": 1}, {"bins": 2.5}, {"bins": None}, {"bound": 0.0}, {"bound": -1.0},
    {"bound": float("nan")}, {"min_bin_width": -1e-3}, {"min_bin_width": 0.2},
    {"min_bin_height": -0.1}, {"min_bin_height": 0.5}, {"min_bin_width": 0.0},
    {"min_bin_height": 0.0}, {"min_slope": -1e-3},
    {"min_slope": 1.0}, {"hidden_units": (16, 0)}, {"hidden_units": "x"},
])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_bad_arguments_raise(name, kwargs):
    key, value = next(iter(kwargs.items()))
    with pytest.raises(ValueError, match=key):
        LAYERS[name](**kwargs)


@pytest.mark.parametrize("key", ["min_bin_width", "min_bin_height"])
def test_a_least_bin_size_of_zero_is_refused(key):
    """A bin of size 0 (its softmax weight underflowed) gave NaN or -inf log-densities
    at points as near as 100, so the least size must be above 0."""
    # (no advice to lower a value that is too small)
    match = rf"^`{key}` must be a number in \(0, 0\.2\), below 1 / bins for bins=5\. Received: {key}=0\.0$"
    with pytest.raises(ValueError, match=match):
        SplineKnots(bins=5, **{key: 0.0})
    with pytest.raises(ValueError, match=rf"\(lower it for that many bins, e\.g\. {key}=0\.02\)"):
        SplineKnots(bins=5, **{key: 0.5})
    assert getattr(SplineKnots(bins=5, **{key: 1e-9}), key) == 1e-9


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_a_bound_the_layers_dtype_cannot_hold_is_refused(name):
    """bound=2e38 in float32 made every output NaN, and 1e-46 (0 in float32) the identity."""
    for bound in (2e38, 1e-46):
        with pytest.raises(ValueError, match=r"`bound` must be a number in \[1\.17549e-38, "
                                             r"8\.50706e\+37\) for float32 layers"):
            LAYERS[name](bound=bound)
    assert LAYERS[name](bound=1e100, dtype="float64").knots.bound == 1e100


def test_bad_num_masked_raises_when_built():
    with pytest.raises(ValueError, match="num_masked"):
        SplineCoupling(num_masked=0)
    with pytest.raises(ValueError, match="num_masked"):
        SplineCoupling(num_masked=3).ensure_built(3)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_many_bins_say_the_default_least_bin_size_is_too_large(name):
    # bins=1000 failed on min_bin_width=0.001, an argument the user never gave, unexplained
    with pytest.raises(ValueError, match=r"below 1 / bins for bins=1000 .*min_bin_width=0\.0001"):
        LAYERS[name](bins=1000)
    LAYERS[name](bins=1000, min_bin_width=1e-4, min_bin_height=1e-4)


@pytest.mark.parametrize("unrolled", [False, True])
def test_float32_inverse_next_to_a_knot_slope_near_float32s_end(unrolled):
    """A conditioner's output for a pass-through coordinate far out (1e19 and beyond)
    gives knot slopes as large: qb^2 - 4 qa qc of the inverse's quadratic overflowed
    float32, and points inside the bound went to inf (log_prob NaN). Scaled by a power
    of 2, the float32 inverse matches float64's. Two equal bins, the knot between them
    at 0 and steep: the points of (-5, 5) go to within 1e-17 of it."""
    knots = SplineKnots(bins=2, bound=5.0)
    slopes = [2e19, 1e25, 1e30, 1e37]
    raw = np.zeros((5, len(slopes), 6))
    raw[4] = np.array(slopes)[:, None]
    y = np.broadcast_to(np.array([0.01, 0.5, 2.0, 4.9, -1.0, -4.9]), raw.shape[1:])
    run = knots.unrolled_kernel if unrolled else knots.kernel
    want, want_ld = run(tf.constant(raw), tf.constant(y), inverse=True)
    got, got_ld = run(tf.constant(raw, "float32"), tf.constant(y, "float32"), inverse=True)
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(got_ld)), (got, got_ld)
    assert np.all(np.abs(want) < 1e-16) and np.all(want[:3, :4] > 0)   # y > 0: x > 0
    # (at 1e37 some x are below float32's least normal number, 1.2e-38)
    np.testing.assert_allclose(got[:3], want[:3], rtol=1e-5)
    np.testing.assert_allclose(got_ld[:3], want_ld[:3], rtol=1e-5)


def test_spline_flows_are_finite_where_a_knot_slope_is_near_float32s_end():
    """A flow whose density direction solves the quadratic (`spline_direction="forward"`)
    over a Student-t base had NaN log-densities at (1e19, 0.5); the default one, sampling
    from z = (1e25, 0.5), inf and NaN."""
    from kerasflows import models as M
    keras.utils.set_random_seed(1)
    flow = M.NSF(2, num_layers=2, hidden_units=(8, 8), base="student_t",
                 spline_direction="forward")
    perturb_weights(flow, 0.3, seed=2)
    far = np.array([[1e19, 0.5], [1e25, 0.5], [1e30, 0.5], [1e19, -0.5]], "float32")
    lp = flow.log_prob(far).numpy()
    assert np.all(np.isfinite(lp)), lp
    keras.utils.set_random_seed(1)
    flow = M.NSF(2, num_layers=2, hidden_units=(8, 8))
    perturb_weights(flow, 0.3, seed=2)
    x, log_det = flow.forward_and_log_det(far)
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(log_det)), (x, log_det)


@pytest.mark.parametrize("unrolled", [False, True])
def test_inverse_gradients_on_a_knot_are_the_same_as_next_to_it(unrolled):
    """The inverse set its relative position to 0 where a point was exactly on a knot,
    which cut every gradient there: dx/dy was 0 instead of the slope."""
    knots = SplineKnots(bins=4, bound=3.0)
    raw = tf.constant(np.random.default_rng(0).normal(size=(11, 1)))
    heights = knots._sizes(raw[4:8], knots.min_bin_height, axis=0).numpy()[:, 0]
    y_knots = np.cumsum(heights)[:3] - 3.0
    # each interior knot and its 4 floats on either side: some land exactly on the knot
    y = np.array([[y0 + k * np.spacing(y0) for k in range(-4, 5)] for y0 in y_knots]).ravel()
    y = tf.constant(y)
    run = knots.unrolled_kernel if unrolled else knots.kernel
    raws = tf.tile(raw, [1, y.shape[0]])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([y, raws])
        x, log_det = run(raws, y, inverse=True)
    dx_dy = tape.gradient(x, y).numpy()
    # dx/dy is the inverse's Jacobian: exp(log_det) on either side of the knot
    np.testing.assert_allclose(dx_dy, np.exp(log_det.numpy()), rtol=1e-6)
    dx_draw = tape.jacobian(x, raws, experimental_use_pfor=False).numpy()
    per_point = np.stack([dx_draw[i, :, i] for i in range(y.shape[0])])
    for block in per_point.reshape(3, 9, -1):
        np.testing.assert_allclose(block, np.broadcast_to(block[0], block.shape), atol=1e-6)


@pytest.mark.parametrize("unrolled", [False, True])
def test_inverse_on_a_knot_of_slope_zero_is_the_knot(unrolled):
    """With min_slope=0 an interior slope underflows to 0 (softplus of -200 in float32);
    a point exactly on that knot makes the root's denominator -qb - sqrt(D) 0 (and 0/0
    NaN) unless it is kept off 0. Bins of 0.5 * 2 bound exactly: the knot is at 0."""
    knots = SplineKnots(bins=2, bound=5.0, min_bin_width=2.0 ** -10, min_bin_height=2.0 ** -10,
                        min_slope=0.0)
    raw = tf.constant(np.array([[0.0], [0.0], [0.0], [0.0], [-200.0]]) * np.ones((1, 4)),
                      "float32")
    y = tf.constant([0.0, 1e-3, -1e-3, 2.0], "float32")
    run = knots.unrolled_kernel if unrolled else knots.kernel
    x, _ = run(raw, y, inverse=True)
    assert np.all(np.isfinite(x.numpy())), x
    assert x.numpy()[0] == 0.0
    back, _ = run(raw, x, inverse=False)
    np.testing.assert_allclose(back, y, atol=1e-6)


def test_a_new_forward_direction_nsf_has_gradients_at_zero():
    """A new NSF's knots are equally spaced, one at exactly 0 for an even number of
    bins: data with exact zeros got dz/dx = 0 through the spline's inverse
    (`spline_direction="forward"` runs it in the density direction)."""
    from kerasflows import models as M
    keras.utils.set_random_seed(0)
    flow = M.NSF(2, num_layers=1, hidden_units=(8,), spline_direction="forward")
    x = tf.Variable([[0.5, 0.0], [0.5, 1e-6]])
    with tf.GradientTape() as tape:
        z1 = flow.inverse(x)[:, 1]
    np.testing.assert_allclose(tape.gradient(z1, x).numpy()[:, 1], [1.0, 1.0], rtol=1e-5)


@pytest.mark.parametrize("key", ["bound", "min_bin_width", "min_bin_height", "min_slope"])
@pytest.mark.parametrize("bad", [True, "0.01", np.array([0.01, 0.02])])
def test_spline_settings_refuse_bools_strings_and_arrays(key, bad):
    """float() took True as 1 and "0.01" as 0.01, where the flows' other number
    settings refuse them."""
    with pytest.raises(ValueError, match=rf"`{key}` must be a number in .*Received: {key}="):
        SplineKnots(**{key: bad})
    good = np.float32(0.01)      # NumPy numbers are numbers
    assert getattr(SplineKnots(**{key: good}), key) == pytest.approx(0.01)


@pytest.mark.parametrize("direction", ["inverse", "forward"])
def test_one_dimensional_autoregressive_bijector_samples_n_rows_given_as_a_tensor(direction):
    """A 1-D SplineAutoregressive's bijector could not run forward in a graph with the
    rows unknown (`flow.distribution.sample(n)`, n a tensor): the spline gave [None, None]
    for [None, 1] rows and TFP's while_loop refused the changed shape."""
    from kerasflows import models
    flow = models.NSF(1, num_layers=2, hidden_units=(8,), autoregressive=True,
                      spline_direction=direction)
    perturb_weights(flow, 0.3)
    spec = [tf.TensorSpec([], tf.int32)]
    sample = tf.function(lambda n: flow.distribution.sample(n, seed=(1, 2)), input_signature=spec)
    got = sample(tf.constant(5))
    assert got.shape == (5, 1)
    np.testing.assert_allclose(got, flow.distribution.sample(5, seed=(1, 2)), rtol=1e-5, atol=1e-6)
    z = tf.function(lambda x: flow.flow_layers[0].bijector().inverse(x),
                    input_signature=[tf.TensorSpec([None, 1])])(got)
    np.testing.assert_allclose(z, flow.flow_layers[0].bijector().inverse(got), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("unrolled", [False, True])
def test_a_point_just_past_its_bins_rounded_right_knot_is_finite(unrolled):
    """XLA's running sum of one wide bin and seven narrow ones put the last knot at
    4.999999 (eager: 5.0), so a point at 4.9999995 sat 5e-5 of a bin past it: with a
    steep left knot (slope 3.8e7) the log-det's denominator was negative and an 8-D
    NSF's log_prob NaN for ~7% of such rows under `eval_mode="xla"`. The bin's knots
    given here as XLA rounded them."""
    knots = SplineKnots(bins=8, bound=5.0)
    c = lambda value: tf.constant([value], "float32")
    v = c(4.9999995)
    out, log_det = knots._rational_quadratic(v, v, tf.constant([True]), c(4.989999), c(4.99),
                                             c(0.01), c(0.01), c(3.77e7), c(1.0), False)
    assert np.isfinite(log_det.numpy()).all(), log_det.numpy()
    # the bin's right end: the spline's value and log-slope there (slope d_kp1 = 1)
    np.testing.assert_allclose(out.numpy(), [5.0], atol=1e-6)
    np.testing.assert_allclose(log_det.numpy(), [0.0], atol=1e-4)
    # the kernels, eagerly: widths of a wide spread (raw ~N(0, 4^2)) whose running sum
    # rounds just short of the bound in ~2% of columns, a point on the float32 below it
    # and the last bin's left knot steep (2,331 and 235 of 100,000 log-dets were NaN)
    rng = np.random.default_rng(0)
    raw = (4 * rng.standard_normal((23, 20_000))).astype("float32")
    raw[22] = 1e4
    v = tf.fill([20_000], np.nextafter(np.float32(5), np.float32(0)))
    run = knots.unrolled_kernel if unrolled else knots.kernel
    out, log_det = run(tf.constant(raw), v)
    assert np.isfinite(log_det.numpy()).all() and np.all(np.abs(out.numpy() - 5) < 1e-5)
