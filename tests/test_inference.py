"""`PiecewiseLinear` tables and `kerasflows.tabulate`: exact, faster evaluation of 2-D flows."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasflows
from kerasflows.inference import tabulate
from kerasflows.layers import AffineCoupling, MLP, Permute, SplineCoupling
from kerasflows.layers.piecewise import PiecewiseLinear, lookup
from kerasflows.testing import perturb_weights


def mlp(hidden=(32, 32), out=7, activation="relu", inputs=1, seed=0, dtype="float32"):
    # Seeded: with unseeded initial weights the float32 network itself was now and then
    # 6e-4 (relative) off its float64 reference at |x| ~ 1e4, over the sanity bound below.
    keras.utils.set_random_seed(seed)
    net = MLP(out, hidden, activation, zero_init=False, dtype=dtype)
    net.build((None, inputs))
    perturb_weights(net, 0.5, seed=seed)
    return net


def reference(net, x):
    """The network in float64 numpy, layer by layer."""
    h = np.asarray(x, np.float64)
    for d in net.hidden:
        h = np.maximum(h @ d.kernel.numpy().astype(np.float64) + d.bias.numpy(), 0)
    return h @ net.out.kernel.numpy().astype(np.float64) + net.out.bias.numpy()


@pytest.mark.parametrize("hidden", [(16,), (32, 32), (8, 8, 8)])
def test_table_equals_the_network_everywhere(hidden):
    net = mlp(hidden)
    table = PiecewiseLinear.from_mlp(net)
    assert table.pieces > 1
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-8, 8, 3000), rng.uniform(-1e4, 1e4, 200),
                        table.breaks, table.breaks + 1e-4, table.breaks - 1e-4])
    x = x.astype(np.float32)[:, None]
    want = reference(net, x)
    scale = 1 + np.abs(want)
    net_err = np.max(np.abs(net(x).numpy() - want) / scale)      # float32 rounding
    assert net_err < 1e-4
    for got in (table(x).numpy(), table.lookup(tf.constant(x)).numpy()):
        assert np.max(np.abs(got - want) / scale) <= net_err


def test_table_columns_are_the_outputs_transposed_in_the_order_asked():
    net = mlp((16, 16), out=6)
    table = PiecewiseLinear.from_mlp(net)
    x = np.random.default_rng(3).uniform(-6, 6, (500, 1)).astype(np.float32)
    rows = table(x).numpy().T
    np.testing.assert_array_equal(table.columns(x).numpy(), rows)
    order = [5, 0, 3, 1]
    np.testing.assert_array_equal(table.columns(x, order).numpy(), rows[order])


def test_table_pieces_and_row_tables_read_the_same_outputs():
    net = mlp((16, 16), out=6)
    table = PiecewiseLinear.from_mlp(net)
    x = np.random.default_rng(4).uniform(-6, 6, (500, 1)).astype(np.float32)
    order = [4, 1, 2]
    columns, pieces = table.columns_and_pieces(x, order)
    np.testing.assert_array_equal(columns.numpy(), table.columns(x, order).numpy())
    np.testing.assert_array_equal(pieces.numpy(), table.piece(tf.constant(x[:, 0])).numpy())
    want = table(x).numpy()
    for width in (None, table.pieces + 3, 1024):          # padded: the same outputs
        tables = table.row_tables([5, 0], pieces=width)
        assert tables[0].shape == (2, width or table.pieces)
        assert table.row_tables((5, 0), pieces=width) is tables       # made once
        rows = tf.constant([[0], [1]])                     # output 5, then output 0
        got = lookup(tables, rows, pieces[None, :], x[None, :, 0]).numpy()
        np.testing.assert_allclose(got, want[:, [5, 0]].T, rtol=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match=f"at least the table's {table.pieces} pieces"):
        table.row_tables([0], pieces=table.pieces - 1)


def test_tables_of_shared_shapes_give_the_same_outputs_and_share_compilations():
    # Tables padded to one shape (more pieces, cells and cell width than their own)
    # compute what they did on their own, through compiled lookups traced once for all.
    from kerasflows.layers import piecewise
    nets = [mlp((16, 16), out=5, seed=s) for s in range(3)] + [mlp((4,), out=5, activation="linear")]
    tables = [PiecewiseLinear.from_mlp(n) for n in nets]
    x = np.concatenate([np.random.default_rng(7).uniform(-9, 9, 700), tables[0].breaks,
                        [-1e6, 1e6, 0.0]]).astype(np.float32)[:, None]
    before = [(t(x).numpy(), t.columns_and_pieces(x, [4, 0])) for t in tables]
    shapes = {(t.cells, t.padded_pieces) for t in tables}
    assert len(shapes) > 1
    PiecewiseLinear.share_shapes(tables)
    assert len({(t.cells, t.padded_pieces) for t in tables}) == 1
    assert max(t.cells for t in tables) == max(s[0] for s in shapes)
    widths = {t.cell_width for t in tables}
    piecewise._SHARED.clear()
    for t, (rows, (columns, pieces)) in zip(tables, before):
        np.testing.assert_array_equal(t(x).numpy(), rows)
        got_columns, got_pieces = t.columns_and_pieces(x, [4, 0])
        np.testing.assert_array_equal(got_columns.numpy(), columns.numpy())
        np.testing.assert_array_equal(got_pieces.numpy(), pieces.numpy())
        assert 0 <= got_pieces.numpy().min() and got_pieces.numpy().max() < t.pieces
    # one trace per table shape (the cell width is each table's own), not one per table
    for name in ("rows", "columns_and_pieces"):
        assert piecewise._SHARED[name].experimental_get_tracing_count() <= len(widths) < 4


def test_table_of_a_network_with_no_kinks_in_range_is_one_piece():
    net = mlp((4,), activation="linear")
    table = PiecewiseLinear.from_mlp(net)
    assert table.pieces == 1
    x = np.linspace(-3, 3, 11, dtype=np.float32)[:, None]
    np.testing.assert_allclose(table(x).numpy(), reference_linear(net, x), rtol=1e-5, atol=1e-5)


def reference_linear(net, x):
    h = np.asarray(x, np.float64)
    for d in [*net.hidden, net.out]:
        h = h @ d.kernel.numpy().astype(np.float64) + d.bias.numpy()
    return h


@pytest.mark.parametrize("kwargs, match", [
    (dict(inputs=2), "one input"),
    (dict(activation="tanh"), "ReLU"),
])
def test_table_refuses_networks_that_are_not_piecewise_linear_in_one_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PiecewiseLinear.from_mlp(mlp(**kwargs))


def two_d_flow(seed=0, dtype="float32"):
    keras.utils.set_random_seed(seed)
    layers = [SplineCoupling(bins=6, hidden_units=(24, 24), name="s0", dtype=dtype),
              Permute(name="p0", dtype=dtype),
              AffineCoupling(hidden_units=(24,), name="a1", dtype=dtype),
              Permute(name="p1", dtype=dtype),
              SplineCoupling(bins=6, hidden_units=(24, 24), name="s2", dtype=dtype)]
    flow = kerasflows.Flow(layers, event_dim=2, dtype=dtype)
    for i, layer in enumerate(layers):
        perturb_weights(layer, 0.3, seed=seed + i)
    return flow


@pytest.mark.parametrize("mode", ["xla", "graph", "eager"])
def test_tabulated_copy_gives_the_flows_numbers(mode):
    flow = two_d_flow()
    flow.eval_mode = mode
    fast, names = tabulate(flow)
    assert names == ("s0", "a1", "s2")
    assert fast is not flow and fast.eval_mode == ("graph" if mode == "xla" else mode)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 2, (2000, 2)), [[40.0, -60.0], [0.0, 0.0]]]).astype("float32")
    # Both float32 versions are compared with the same flow in float64: the table is
    # built in float64, so it is at least as close as the float32 network.
    exact = two_d_flow(dtype="float64").log_prob(x.astype("float64")).numpy()
    err_table = np.abs(fast.log_prob(x).numpy() - exact)
    err_net = np.abs(flow.log_prob(x).numpy() - exact)
    assert err_table.max() <= 1.5 * err_net.max() + 1e-4
    assert np.median(err_table) <= 1.5 * np.median(err_net) + 1e-6
    np.testing.assert_allclose(fast.log_prob(x).numpy(), flow.log_prob(x).numpy(),
                               rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(fast.sample(500, seed=3).numpy(),
                               flow.sample(500, seed=3).numpy(), rtol=1e-5, atol=1e-4)
    for a, b in zip(fast.trace_inverse(x[:50]), flow.trace_inverse(x[:50])):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
    # The original is untouched.
    assert all(getattr(l, "table", None) is None for l in flow.flow_layers)
    # The flow's tables share cells and padded pieces, so their compiled lookups are shared.
    assert len({(l.table.cells, l.table.padded_pieces)
                for l in fast.flow_layers if l.name in names}) == 1


def test_tabulated_spline_transforming_several_dimensions():
    # num_masked=1 in 3-D: the table serves two splines, asked for bins first.
    keras.utils.set_random_seed(4)
    flow = kerasflows.Flow([SplineCoupling(bins=5, hidden_units=(16,), num_masked=1),
                            Permute(), SplineCoupling(bins=5, hidden_units=(16,), num_masked=1)],
                           event_dim=3)
    perturb_weights(flow, 0.3, seed=4)
    fast, names = tabulate(flow)
    assert len(names) == 2
    x = np.random.default_rng(5).normal(0, 2, (1000, 3)).astype("float32")
    np.testing.assert_allclose(fast.log_prob(x).numpy(), flow.log_prob(x).numpy(),
                               rtol=1e-4, atol=1e-4)
    z = np.random.default_rng(6).normal(size=(300, 3)).astype("float32")
    for got in (fast.forward(z), fast.bijector.forward(z)):     # own path, TFP path
        np.testing.assert_allclose(got.numpy(), flow.forward(z).numpy(), atol=1e-4)
    (states, dets), (want_states, want_dets) = (
        f.trace(z, return_log_dets=True) for f in (fast, flow))
    for a, b in zip(states + dets, want_states + want_dets):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)


def test_tabulate_leaves_flows_it_cannot_speed_up_alone():
    flow = kerasflows.Flow([AffineCoupling(hidden_units=(8,), num_masked=2), Permute(),
                            AffineCoupling(hidden_units=(8,), activation="tanh")], event_dim=3)
    perturb_weights(flow, 0.3)
    fast, names = tabulate(flow)
    assert names == () and fast.eval_mode == flow.eval_mode
    conditional = kerasflows.Flow([AffineCoupling(hidden_units=(8,), context_dim=1)],
                                  event_dim=2, context_dim=1)
    assert tabulate(conditional)[1] == ()       # its conditioner also sees the context
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    np.testing.assert_allclose(fast.log_prob(x).numpy(), flow.log_prob(x).numpy(), atol=1e-6)


def test_tabulated_tables_are_a_snapshot_of_the_weights():
    flow = two_d_flow()
    fast, _ = tabulate(flow)
    x = np.random.default_rng(2).normal(size=(100, 2)).astype("float32")
    before = fast.log_prob(x).numpy()
    for w in fast.trainable_weights:
        w.assign(w * 0.0)
    layer = fast.flow_layers[0]
    assert layer.table is not None
    np.testing.assert_allclose(fast.log_prob(x).numpy(), before, atol=1e-6)


def test_table_of_a_relu_layer_blind_to_its_input_keeps_its_on_units():
    # with a zero first kernel no unit changes sign: the one piece (-inf, inf) was
    # judged at inf - 1 = NaN, read as off, and a unit of positive bias was dropped
    net = mlp((4, 3))
    first = net.hidden[0]
    first.kernel.assign(np.zeros(first.kernel.shape, np.float32))
    first.bias.assign([1.0, -1.0, 0.5, 2.0])
    table = PiecewiseLinear.from_mlp(net)
    assert table.pieces == 1
    x = np.linspace(-5, 5, 11, dtype=np.float32)[:, None]
    np.testing.assert_allclose(table(x).numpy(), reference(net, x), rtol=1e-5, atol=1e-5)
    assert np.abs(reference(net, x)).max() > 0.1


def test_tabulate_refuses_what_is_not_a_flow():
    # a path or a layer failed deep inside (from_config, flow_layers)
    for bad in ("flow.keras", Permute()):
        with pytest.raises(TypeError, match=r"`flow` must be a kerasflows.Flow.*Received: flow="):
            tabulate(bad)


def test_tabulated_copy_of_a_flow_with_an_adapted_normalization_encoder():
    # the copy's Normalization got the adapted statistics by set_weights, which does
    # not call finalize_state: it normalized by mean 0, variance 1 instead
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 2)).astype("float32")
    context = (rng.standard_normal((6, 1)) * 10 + 50).astype("float32")
    norm = keras.layers.Normalization()
    norm.adapt(context)
    encoder = keras.Sequential([keras.layers.Normalization(), keras.layers.Dense(3)])
    encoder.layers[0].adapt(context)
    for context_encoder in (norm, encoder):
        flow = kerasflows.models.NSF(2, num_layers=2, hidden_units=(8,), context_dim=1,
                                     context_encoder=context_encoder)
        perturb_weights(flow, 0.3)
        copy, _ = tabulate(flow)
        np.testing.assert_allclose(copy.log_prob(x, context=context).numpy(),
                                   flow.log_prob(x, context=context).numpy(),
                                   rtol=1e-5, atol=1e-5)
