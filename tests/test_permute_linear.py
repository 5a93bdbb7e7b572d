"""What is special to `Permute` and `InvertibleLinear`.

The conformance suite (test_conformance.py) checks both at event_dim 2 and 5;
here they are also checked at 1 and 3, with explicit orders, and against
their defining formulas.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasflows
from kerasflows.layers import ElementwiseAffine, InvertibleLinear, Permute
from kerasflows.layers.linear import lu_decompose, random_rotation
from kerasflows.testing import check_flow_layer, perturb_weights

DTYPES = ["float32", "float64"]


def _batch(dim, dtype, n=8, seed=0):
    return tf.constant(np.random.default_rng(seed).standard_normal((n, dim)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [1, 3])
@pytest.mark.parametrize("make", [lambda d: Permute(dtype=d),
                                  lambda d: Permute("random", seed=5, dtype=d),
                                  lambda d: InvertibleLinear(seed=2, dtype=d)],
                         ids=["reverse", "random", "linear"])
def test_check_flow_layer(make, dim, dtype):
    report = check_flow_layer(make(dtype), dim, perturb=0.3)
    if dtype == "float64":
        assert report["inverse_error"] <= 1e-5 and report["logdet_error"] <= 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
def test_explicit_order_passes_check(dtype):
    check_flow_layer(Permute([1, 2, 0], dtype=dtype), 3)


def test_permute_forward_gathers_by_order():
    z = np.arange(12, dtype="float32").reshape(3, 4)
    for order, perm in [("reverse", [3, 2, 1, 0]), ([2, 0, 3, 1], [2, 0, 3, 1])]:
        x, ld = Permute(order).forward_and_log_det(z)
        np.testing.assert_array_equal(x, z[:, perm])
        np.testing.assert_array_equal(ld, np.zeros(3))


@pytest.mark.parametrize("order", ["reverse", "random", [2, 0, 3, 1]])
def test_permute_same_map_in_training_and_inference_and_as_tfp(order):
    # Inference reverses with a reverse op, training steps gather; both are tfb.Permute's map.
    layer = Permute(order, seed=4)
    layer.ensure_built(4)
    x = tf.constant(np.random.default_rng(0).standard_normal((6, 4)), tf.float32)
    ref = layer.bijector()
    for training in (False, True):
        y, fld = layer.forward_and_log_det(x, training=training)
        back, ild = layer.inverse_and_log_det(y, training=training)
        np.testing.assert_array_equal(y, ref.forward(x))
        np.testing.assert_array_equal(back, x)
        np.testing.assert_array_equal(fld, np.zeros(6))
        np.testing.assert_array_equal(ild, np.zeros(6))
    assert not np.array_equal(y, x)


def _checkerboard(dim):
    """The order of the coupling recipes' data-end `Permute` (models._coupling_split)."""
    return np.argsort(list(range(0, dim, 2)) + list(range(1, dim, 2))).tolist()


def _orders(dim, rng):
    evens_first = list(range(0, dim, 2)) + list(range(1, dim, 2))
    orders = [evens_first, _checkerboard(dim), list(np.roll(np.arange(dim), 2)),
              list(range(dim))]
    for k in (3, 4, 5):
        q = np.concatenate([np.arange(r, dim, k) for r in range(k)])
        orders += [q.tolist(), np.argsort(q).tolist()]
    return orders + [rng.permutation(dim).tolist() for _ in range(10)]


def test_sliced_orders_equal_the_gather():
    # _pieces recognises strided runs and interleaves; _sliced must then be v[..., p]
    # exactly, for every batch shape, eagerly, in a graph and under XLA.
    from kerasflows.layers.permute import _pieces, _sliced
    rng = np.random.default_rng(0)
    kinds = set()
    # an order drawn again (most small dims repeat some) runs the graph and the XLA
    # code traced for it the first time, on its new v: 97 orders of the 179 compile
    functions = {}
    for dim in range(1, 13):
        for order in _orders(dim, rng):
            how = _pieces(np.array(order))
            kinds.add(how and how[0])
            if how is None:
                continue
            v = tf.constant(rng.standard_normal((3, 2, dim)), tf.float32)
            want = v.numpy()[..., order]
            np.testing.assert_array_equal(_sliced(v, how), want)
            np.testing.assert_array_equal(_sliced(v[0], how), want[0])
            for jit in (False, True):
                key = (tuple(order), jit)
                if key not in functions:
                    functions[key] = tf.function(
                        lambda t, how=how: _sliced(t, how), jit_compile=jit,
                        input_signature=[tf.TensorSpec([None, dim], tf.float32)])
                np.testing.assert_array_equal(functions[key](v[0]), want[0])
    assert kinds == {"concat", "interleave", None}
    assert _pieces(np.array(_checkerboard(64)))[0] == "interleave"
    assert _pieces(np.argsort(_checkerboard(64)))[0] == "concat"
    assert _pieces(np.random.default_rng(1).permutation(64)) is None


@pytest.mark.parametrize("dim", [4, 9, 64])
def test_checkerboard_permute_slices_instead_of_gathering(dim):
    # The recipes' checkerboard order runs as slices both ways, in training too, and is
    # still tfb.Permute's map; a random order of the same size still gathers.
    layer = Permute(_checkerboard(dim))
    layer.ensure_built(dim)
    x = tf.constant(np.random.default_rng(0).standard_normal((5, dim)), tf.float32)
    ref = layer.bijector()
    spec = [tf.TensorSpec([None, dim], tf.float32)]
    for training in (False, True):
        np.testing.assert_array_equal(layer.forward_and_log_det(x, training=training)[0],
                                      ref.forward(x))
        np.testing.assert_array_equal(layer.inverse_and_log_det(x, training=training)[0],
                                      ref.inverse(x))
        for method in (layer.forward_and_log_det, layer.inverse_and_log_det):
            graph = tf.function(lambda t: method(t, training=training)).get_concrete_function(
                *spec).graph
            assert "GatherV2" not in {op.type for op in graph.get_operations()}, (dim, method)
    shuffled = Permute("random", seed=2)
    shuffled.ensure_built(dim)
    graph = tf.function(lambda t: shuffled.forward_and_log_det(t)).get_concrete_function(
        *spec).graph
    assert ("GatherV2" in {op.type for op in graph.get_operations()}) == (dim > 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [5, 10])
def test_checkerboard_permute_passes_check(dim, dtype):
    check_flow_layer(Permute(_checkerboard(dim), dtype=dtype), dim)


def test_random_order_is_reproducible_from_seed():
    def perm(seed):
        layer = Permute("random", seed=seed)
        layer.ensure_built(6)
        return layer.permutation
    np.testing.assert_array_equal(perm(3), np.random.default_rng(3).permutation(6))
    np.testing.assert_array_equal(perm(3), perm(3))
    assert not np.array_equal(perm(3), perm(4))


def test_an_unseeded_random_order_is_drawn_per_layer_and_never_the_identity(tmp_path):
    """The default seed was 0: every unseeded "random" layer had one order, in 2-D
    the identity, so a coupling flow never transformed its first coordinate."""
    keras.utils.set_random_seed(0)
    flow = kerasflows.Flow([Permute("random") for _ in range(6)], event_dim=2)
    assert all(list(l.permutation) == [1, 0] for l in flow.flow_layers)
    keras.utils.set_random_seed(1)
    layers = [Permute("random") for _ in range(6)]
    for layer in layers:
        layer.ensure_built(4)
        assert list(layer.permutation) != [0, 1, 2, 3]
        np.testing.assert_array_equal(layer.permutation,
                                      np.random.default_rng(layer.seed).permutation(4))
    assert len({tuple(l.permutation) for l in layers}) > 1
    keras.utils.set_random_seed(1)           # the global seed repeats the draws
    again = [Permute("random") for _ in range(6)]
    for a, b in zip(layers, again):
        b.ensure_built(4)
        assert a.seed == b.seed
    # the seed used is saved: the order survives a reload
    flow = kerasflows.Flow([Permute("random"), ElementwiseAffine()], event_dim=5)
    flow.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    np.testing.assert_array_equal(loaded.flow_layers[0].permutation,
                                  flow.flow_layers[0].permutation)
    assert Permute().seed is None and Permute("random", seed=0).seed == 0


def test_random_order_survives_save_and_load(tmp_path):
    flow = kerasflows.Flow([Permute("random", seed=7), ElementwiseAffine()], event_dim=5)
    perturb_weights(flow, 0.5, seed=1)
    path = str(tmp_path / "f.keras")
    flow.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.flow_layers[0].permutation,
                                  flow.flow_layers[0].permutation)
    z = _batch(5, "float32")
    np.testing.assert_allclose(loaded.forward(z), flow.forward(z), atol=1e-6)


@pytest.mark.parametrize("order", ["shuffle", [0, 0, 1], [0.5, 1.0], 3, [1, 2]])
def test_bad_order_raises_at_construction(order):
    with pytest.raises(ValueError, match="order"):
        Permute(order)


def test_unknown_order_lists_valid_names():
    with pytest.raises(ValueError, match=r"'reverse', 'random'.*Received: order='shuffle'"):
        Permute("shuffle")
    # bools are not positions ([True, False] was taken as the order (1, 0))
    with pytest.raises(ValueError, match=r"list of ints\. Received: order=\[True, False\]"):
        Permute([True, False])


def test_order_length_mismatch_raises_at_build():
    with pytest.raises(ValueError, match=r"range\(3\).*Received: order=\[1, 0\]"):
        Permute([1, 0]).ensure_built(3)


@pytest.mark.parametrize("cls", [Permute, InvertibleLinear])
def test_negative_seed_raises(cls):
    with pytest.raises(ValueError, match="seed=-1"):
        cls(seed=-1)


def test_lu_decompose_reconstructs_and_matches_tf_convention():
    a = np.random.default_rng(0).standard_normal((6, 6))
    perm, lower, upper = lu_decompose(a)
    np.testing.assert_allclose(a[perm], lower @ upper, atol=1e-12)
    np.testing.assert_array_equal(np.diag(lower), np.ones(6))
    np.testing.assert_array_equal(np.triu(lower, 1), 0)
    np.testing.assert_array_equal(np.tril(upper, -1), 0)
    _, tf_perm = tf.linalg.lu(a)
    np.testing.assert_array_equal(perm, tf_perm)


def test_lu_decompose_rejects_singular_and_non_square():
    with pytest.raises(ValueError, match="singular"):
        lu_decompose(np.array([[1.0, 2.0], [2.0, 4.0]]))
    with pytest.raises(ValueError, match="square"):
        lu_decompose(np.ones((2, 3)))


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_random_rotation_is_a_rotation(dim):
    q = random_rotation(dim, seed=3)
    np.testing.assert_allclose(q @ q.T, np.eye(dim), atol=1e-12)
    assert np.linalg.det(q) == pytest.approx(1.0)
    np.testing.assert_array_equal(q, random_rotation(dim, seed=3))


def test_linear_starts_at_the_seeded_rotation():
    layer = InvertibleLinear(seed=4, dtype="float64")
    layer.ensure_built(4)
    np.testing.assert_allclose(layer.weight_matrix(), random_rotation(4, 4), atol=1e-12)
    _, ld = layer.forward_and_log_det(_batch(4, "float64"))
    np.testing.assert_allclose(ld, 0.0, atol=1e-12)


@pytest.mark.parametrize("dim", [1, 3, 5])
def test_linear_is_w_times_z_with_slogdet(dim):
    layer = InvertibleLinear(seed=1, dtype="float64")
    layer.ensure_built(dim)
    perturb_weights(layer, 0.4, seed=2)
    w = layer.weight_matrix().numpy()
    sign, logabsdet = np.linalg.slogdet(w)
    assert sign != 0
    z = _batch(dim, "float64")
    x, ld = layer.forward_and_log_det(z)
    np.testing.assert_allclose(x, z.numpy() @ w.T, atol=1e-12)
    np.testing.assert_allclose(ld, logabsdet, atol=1e-12)
    np.testing.assert_allclose(ld, np.sum(layer.log_s.numpy()), atol=1e-12)
    z2, ild = layer.inverse_and_log_det(x)
    np.testing.assert_allclose(z2, np.linalg.solve(w, x.numpy().T).T, atol=1e-10)
    np.testing.assert_allclose(ild, -logabsdet, atol=1e-12)


def test_linear_fixed_parts_are_saved_and_not_trained(tmp_path):
    flow = kerasflows.Flow([InvertibleLinear(seed=3)], event_dim=4)
    layer = flow.flow_layers[0]
    trainable = {w.name for w in layer.trainable_weights}
    assert trainable == {"lower_upper", "log_s"}
    path = str(tmp_path / "f.keras")
    flow.save(path)
    loaded = keras.models.load_model(path).flow_layers[0]
    np.testing.assert_array_equal(loaded.permutation.numpy(), layer.permutation.numpy())
    np.testing.assert_array_equal(loaded.sign.numpy(), layer.sign.numpy())
    np.testing.assert_allclose(loaded.weight_matrix(), layer.weight_matrix(), atol=1e-7)


def test_linear_bijector_inverse_keeps_extra_batch_dims():
    layer = InvertibleLinear(seed=5, dtype="float64")
    layer.ensure_built(3)
    perturb_weights(layer, 0.3)
    z = np.random.default_rng(0).standard_normal((2, 4, 3))
    b = layer.bijector()
    np.testing.assert_allclose(b.inverse(b.forward(z)), z, atol=1e-12)
