"""What is special to `MaskedAutoregressive` and `InverseAutoregressive`.

The conformance suite (test_conformance.py) runs `check_flow_layer` on both
layers in float64 at event_dim 2 and 5; here the remaining dtype/size cases,
agreement with TFP's `MaskedAutoregressiveFlow`, the autoregressive
structure and the one-pass directions.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from kerasflows.layers import InverseAutoregressive, MaskedAutoregressive
from kerasflows.layers.coupling import soft_clamp
from kerasflows.testing import check_flow_layer, perturb_weights

tfb = tfp.bijectors
LAYERS = {"maf": MaskedAutoregressive, "iaf": InverseAutoregressive}


def make(name, dim, ctx=None, dtype="float64", perturb=0.3, **kwargs):
    keras.utils.set_random_seed(0)    # unseeded initial weights made some tests flaky
    layer = LAYERS[name](hidden_units=(16, 16), context_dim=ctx, dtype=dtype, **kwargs)
    layer.ensure_built(dim)
    if perturb:
        perturb_weights(layer, perturb, seed=1)
    return layer


def batch(dim, ctx=None, dtype="float64", n=8, scale=1.5, seed=0):
    rng = np.random.default_rng(seed)
    x = tf.constant(scale * rng.standard_normal((n, dim)), dtype)
    c = None if ctx is None else tf.constant(rng.standard_normal((n, ctx)), dtype)
    return x, c


def count_conditioner_calls(layer, net, method):
    """How many times `net` is called while tracing `layer.<method>` into a graph."""
    calls = []
    original = net.call
    net.call = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        spec = [tf.TensorSpec([None, layer.event_dim], layer.compute_dtype)]
        if layer.context_dim:
            spec.append(tf.TensorSpec([None, layer.context_dim], layer.compute_dtype))
        tf.function(getattr(layer, method)).get_concrete_function(*spec)
    finally:
        del net.call
    return len(calls)


# With the conformance suite's float64 cases at event_dim 2 and 5 (with and
# without context), these cover float32 and float64, event_dim 2, 3 and 5,
# conditional and not (the eager Jacobian of a sequential direction is slow,
# so the full product is not repeated).
CASES = [(3, 2, "float32"), (5, None, "float32"), (3, None, "float64"), (3, 2, "float64")]


@pytest.mark.parametrize("dim,ctx,dtype", CASES)
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_check_flow_layer(name, dim, ctx, dtype):
    layer = LAYERS[name](hidden_units=(16, 16), context_dim=ctx, dtype=dtype)
    report = check_flow_layer(layer, dim, context_dim=ctx, perturb=0.3)
    assert report["inverse_error"] <= (1e-5 if dtype == "float64" else 1e-3)


@pytest.mark.parametrize("ctx", [None, 2])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_a_linear_made_works_in_both_directions_at_every_width(name, ctx):
    """`hidden_units=()` (a linear conditioner) is accepted, as in the coupling
    layers; from `SOLVE_MIN_DIM` dimensions on the sequential direction went
    to `MADE.solve`, which needs a hidden layer, and raised an IndexError."""
    layer = LAYERS[name](hidden_units=(), context_dim=ctx, dtype="float64")
    report = check_flow_layer(layer, 5, context_dim=ctx, perturb=0.3)
    assert report["inverse_error"] <= 1e-8


def _tfp_maf(layer, context):
    def shift_and_log_scale(y):
        p = layer.made(y, context=context)
        return p[..., 0], soft_clamp(p[..., 1], layer.max_log_scale)
    if layer.affine_direction == "forward":
        return tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=shift_and_log_scale)

    def bijector_fn(y):     # the inverse is `x * exp(s) + t`
        shift, log_scale = shift_and_log_scale(y)
        return tfb.Invert(tfb.Shift(shift)(tfb.Scale(log_scale=log_scale)))
    return tfb.MaskedAutoregressiveFlow(bijector_fn=bijector_fn)


@pytest.mark.parametrize("direction", ["inverse", "forward"])
@pytest.mark.parametrize("ctx", [None, 2])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_matches_tfp_masked_autoregressive_flow(name, ctx, direction):
    layer = make(name, 4, ctx, max_log_scale=2.0, affine_direction=direction)
    ref = _tfp_maf(layer, batch(4, ctx)[1])
    if name == "iaf":
        ref = tfb.Invert(ref)
    z, c = batch(4, ctx)
    x, fld = layer.forward_and_log_det(z, context=c)
    np.testing.assert_allclose(x, ref.forward(z), atol=1e-12)
    np.testing.assert_allclose(fld, ref.forward_log_det_jacobian(z, event_ndims=1), atol=1e-12)
    z2, ild = layer.inverse_and_log_det(x, context=c)
    np.testing.assert_allclose(z2, ref.inverse(x), atol=1e-12)
    np.testing.assert_allclose(ild, ref.inverse_log_det_jacobian(x, event_ndims=1), atol=1e-12)
    assert np.max(np.abs(x - z)) > 1e-2  # the perturbed layer is not the identity


@pytest.mark.parametrize("direction", ["forward_and_log_det", "inverse_and_log_det"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_jacobian_is_lower_triangular(name, direction):
    layer = make(name, 5, ctx=2)
    x, c = batch(5, ctx=2)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y, _ = getattr(layer, direction)(x, context=c)
    jac = tape.batch_jacobian(y, x).numpy()  # jac[:, i, j] = dy_i / dx_j
    upper = np.triu(np.ones((5, 5), bool), k=1)
    assert np.all(jac[:, upper] == 0)
    assert np.all(np.abs(jac[:, ~upper]).max(axis=0) > 1e-6)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_new_layer_is_identity(name):
    layer = make(name, 3, perturb=0)
    z, _ = batch(3)
    x, ld = layer.forward_and_log_det(z)
    np.testing.assert_array_equal(x, z)
    np.testing.assert_array_equal(ld, np.zeros(8))


@pytest.mark.parametrize("direction", ["inverse", "forward"])
def test_log_scale_is_soft_clamped(direction):
    layer = make("maf", 2, perturb=0, max_log_scale=0.5, affine_direction=direction)
    layer.made.biases[-1].assign([0.0, 0.0, 0.0, 100.0])  # huge raw log-scale for dim 2
    _, ld = layer.forward_and_log_det(batch(2)[0])
    # the sampling direction multiplies by exp(-s) in the inverse form
    np.testing.assert_allclose(ld, 0.5 if direction == "forward" else -0.5, atol=1e-12)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_one_pass_direction_runs_the_made_once(name):
    layer = make(name, 3, ctx=2, dtype="float32")
    one_pass = "inverse_and_log_det" if name == "maf" else "forward_and_log_det"
    assert count_conditioner_calls(layer, layer.made, one_pass) == 1


@pytest.mark.parametrize("kwargs", [
    {"max_log_scale": 0}, {"max_log_scale": -1.0}, {"max_log_scale": "big"},
    {"max_log_scale": float("inf")}, {"hidden_units": (16, 0)}, {"context_dim": 0},
])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_bad_arguments_raise(name, kwargs):
    key, value = next(iter(kwargs.items()))
    with pytest.raises(ValueError, match=key):
        LAYERS[name](**kwargs)


def _both_ways(layer, method, *args, **kwargs):
    """`layer.<method>` through `MADE.solve` and through the network re-run per dimension."""
    solved = getattr(layer, method)(*args, **kwargs)
    layer.SOLVE_MIN_DIM = 10 ** 6
    try:
        passes = getattr(layer, method)(*args, **kwargs)
    finally:
        del layer.SOLVE_MIN_DIM
    return solved, passes


# Fewer units than degrees (some degrees have no unit), uneven groups, three layers,
# an activation that is not 0 at 0 (the padding unit must not leak), a context.
SOLVE_CASES = [(6, None, (3,), "relu"), (5, 2, (7, 4, 9), "tanh"), (4, 3, (16, 16), "relu"),
               (9, None, (20, 5), "sigmoid")]


@pytest.mark.parametrize("dim,ctx,hidden,activation", SOLVE_CASES)
@pytest.mark.parametrize("name", ["maf", "iaf", "spline"])
def test_made_solve_matches_one_pass_per_dimension(name, dim, ctx, hidden, activation):
    from kerasflows.layers import SplineAutoregressive
    keras.utils.set_random_seed(0)
    cls = SplineAutoregressive if name == "spline" else LAYERS[name]
    layer = cls(hidden_units=hidden, activation=activation, context_dim=ctx, dtype="float64")
    layer.ensure_built(dim)
    perturb_weights(layer, 0.3, seed=2)
    x, c = batch(dim, ctx, n=11)
    method = "inverse_and_log_det" if name == "iaf" else "forward_and_log_det"
    (y, ld), (y_ref, ld_ref) = _both_ways(layer, method, x, context=c)
    np.testing.assert_allclose(y, y_ref, atol=1e-10)
    np.testing.assert_allclose(ld, ld_ref, atol=1e-10)
    assert np.max(np.abs(y - x)) > 1e-2          # not the identity
    other = "forward_and_log_det" if name == "iaf" else "inverse_and_log_det"
    back, back_ld = getattr(layer, other)(y, context=c)
    np.testing.assert_allclose(back, x, atol=1e-9)
    np.testing.assert_allclose(back_ld, -ld, atol=1e-9)


def test_made_solve_gradient_matches_one_pass_per_dimension():
    layer = make("iaf", 5, 2)
    x, c = batch(5, 2)

    def grads():
        with tf.GradientTape() as tape:
            y, log_det = layer.inverse_and_log_det(x, context=c)   # IAF: the solved direction
            loss = tf.reduce_sum(y ** 2) + tf.reduce_sum(log_det)
        return tape.gradient(loss, layer.trainable_variables)
    solved = grads()
    layer.SOLVE_MIN_DIM = 10 ** 6
    passes = grads()
    del layer.SOLVE_MIN_DIM
    assert len(solved) == len(layer.trainable_variables)
    for g, g_ref in zip(solved, passes):
        np.testing.assert_allclose(g, g_ref, atol=1e-9)
    assert any(np.max(np.abs(g)) > 1e-3 for g in solved)


@pytest.mark.parametrize("dim, ctx", [(3, None), (3, 2)])
def test_second_order_gradients_of_the_sequential_direction_compile_with_xla(dim, ctx):
    """A score-matching loss (weights' gradient of |d log p / dx|^2) through the IAF's
    density direction, the passes' while loop below `SOLVE_MIN_DIM`: XLA refused
    it ("Transpose must be a compile-time constant", the MADE's output weights
    reordered inside the loop)."""
    layer = make("iaf", dim, ctx, dtype="float32")
    x, c = batch(dim, ctx, dtype="float32")

    def loss_and_grads(x, c):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                inner.watch(x)
                y, log_det = layer.inverse_and_log_det(x, context=c)
                log_p = log_det - 0.5 * tf.reduce_sum(y ** 2, -1)
            score = inner.gradient(log_p, x)
            loss = tf.reduce_mean(tf.reduce_sum(score ** 2, -1))
        return loss, outer.gradient(loss, layer.trainable_variables)
    want_loss, want = tf.function(loss_and_grads)(x, c)
    loss, grads = tf.function(loss_and_grads, jit_compile=True)(x, c)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    assert sum(g is not None for g in grads) == len(layer.trainable_variables)
    for g, g_ref in zip(grads, want):
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-5)
    assert any(np.max(np.abs(g)) > 1e-3 for g in grads)


def _largest_constant(graph_def):
    """The most elements of any constant in `graph_def`, its functions' included."""
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    sizes = [int(np.prod([d.size for d in n.attr["value"].tensor.tensor_shape.dim]))
             for n in nodes if n.op == "Const"]
    return max(sizes)


@pytest.mark.parametrize("ctx", [None, 2])
@pytest.mark.parametrize("method", ["forward_and_log_det", "inverse_and_log_det"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_traced_directions_hold_no_constant_the_size_of_a_kernel(name, method, ctx):
    """The MADE's masks are built in the graph from its units' degrees: each traced
    function carried every mask as a constant as large as its kernel (a wide
    flow's SavedModel as large as its weights, and over GraphDef's 2 GB limit)."""
    layer = LAYERS[name](hidden_units=(32, 32), context_dim=ctx)
    layer.ensure_built(6)
    spec = [tf.TensorSpec([None, 6], tf.float32)]
    if ctx:
        spec.append(tf.TensorSpec([None, ctx], tf.float32))
    graph = tf.function(getattr(layer, method)).get_concrete_function(*spec).graph
    smallest_kernel = min(int(np.prod(k.shape)) for k in layer.made.kernels)
    assert _largest_constant(graph.as_graph_def()) < smallest_kernel / 2
