"""The conditioner networks (`kerasflows.layers.nets`): starting weights, and
the narrow output layer's written-out gradient.

Hidden layers start as PyTorch's `nn.Linear` (weights and biases uniform in
+-1/sqrt(fan_in)); the output layer at zero unless `zero_init=False`. The
conformance suite checks the networks' maths through every flow layer.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasflows import layers, models
from kerasflows.layers import made, nets
from kerasflows.layers.made import MADE
from kerasflows.layers.nets import MLP, narrow_matmul


def weights_of(net):
    """`[(kernel, bias), ...]` of `net`'s layers, first to last, as numpy arrays."""
    if isinstance(net, MADE):
        return [(k.numpy(), b.numpy()) for k, b in zip(net.kernels, net.biases)]
    return [(d.kernel.numpy(), d.bias.numpy()) for d in [*net.hidden, net.out]]


def build(kind, zero_init=True, fan_in=3):
    keras.utils.set_random_seed(0)
    if kind == "mlp":
        net = MLP(10, hidden_units=(64, 32), zero_init=zero_init)
    else:
        net = MADE(2, hidden_units=(64, 32), zero_init=zero_init)
    net.build((None, fan_in))
    return net


@pytest.mark.parametrize("kind", ["mlp", "made"])
def test_hidden_layers_start_uniform_in_one_over_sqrt_fan_in(kind):
    layers = weights_of(build(kind))
    for kernel, bias in layers[:-1]:
        bound = 1 / np.sqrt(kernel.shape[0])
        for w in (kernel, bias):
            assert np.abs(w).max() <= bound
            # uniform on [-bound, bound]: standard deviation bound / sqrt(3), spread over the range
            assert abs(w.std() / (bound / np.sqrt(3)) - 1) < 0.25
            assert w.min() < -0.5 * bound and w.max() > 0.5 * bound
    kernel, bias = layers[-1]
    assert not kernel.any() and not bias.any()


@pytest.mark.parametrize("kind", ["mlp", "made"])
def test_output_layer_without_zero_init_starts_like_the_hidden_ones(kind):
    kernel, bias = weights_of(build(kind, zero_init=False))[-1]
    bound = 1 / np.sqrt(kernel.shape[0])
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
    assert kernel.std() > 0.5 * bound / np.sqrt(3) and bias.std() > 0.5 * bound / np.sqrt(3)


def test_one_input_conditioners_spread_their_relu_kinks():
    """A 2-D coupling's conditioner sees one number: its first layer's kinks sit at
    -bias / weight, which zero biases would stack at the origin."""
    keras.utils.set_random_seed(0)
    flow = models.NSF(2, num_layers=1, hidden_units=(64, 64))
    first = flow.flow_layers[0].net.hidden[0]
    kinks = -first.bias.numpy() / first.kernel.numpy()[0]
    assert np.unique(np.round(kinks, 6)).size == 64
    assert np.abs(kinks).max() > 1.0


def test_every_layer_draws_its_own_weights_and_a_seed_repeats_them():
    def hidden_kernels():
        keras.utils.set_random_seed(3)
        flow = models.RealNVP(4, num_layers=3, hidden_units=(16, 16))
        return [l.net.hidden[1].kernel.numpy() for l in flow.flow_layers
                if hasattr(l, "net")]
    first, again = hidden_kernels(), hidden_kernels()
    assert len(first) == 3
    assert not np.allclose(first[0], first[1]) and not np.allclose(first[1], first[2])
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def _matmul_derivatives(matmul, h, kernel, mode):
    """`matmul(h, kernel)` with the gradient of a loss in h and kernel, and the
    second derivatives (gradient of a function of the first gradient), run
    eagerly, as a graph or XLA-compiled."""
    def run(h, kernel):
        with tf.GradientTape(persistent=True) as outer:
            outer.watch([h, kernel])
            with tf.GradientTape() as inner:
                inner.watch([h, kernel])
                y = matmul(h, kernel)
                loss = tf.reduce_sum(tf.sin(y) * tf.range(1.0, y.shape[-1] + 1.0))
            dh, dkernel = inner.gradient(loss, [h, kernel])
            second = tf.reduce_sum(dh ** 2) + tf.reduce_sum(tf.cos(dkernel))
        return [y, dh, dkernel, *outer.gradient(second, [h, kernel])]
    if mode != "eager":
        run = tf.function(run, jit_compile=mode == "xla")
    return [t.numpy() for t in run(h, kernel)]


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
@pytest.mark.parametrize("columns", [1, 2, 3])
def test_narrow_matmul_values_gradients_and_second_derivatives_are_matmuls(columns, mode):
    rng = np.random.default_rng(columns)
    h = tf.constant(rng.normal(size=(37, 16)), "float32")
    kernel = tf.constant(rng.normal(size=(16, columns)), "float32")
    ours = _matmul_derivatives(narrow_matmul, h, kernel, mode)
    plain = _matmul_derivatives(tf.matmul, h, kernel, mode)
    for name, a, b in zip(["value", "dh", "dkernel", "d2h", "d2kernel"], ours, plain):
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5, err_msg=name)


@pytest.mark.parametrize("out_units", [1, 2, 3])
def test_mlp_narrow_output_matches_its_dense_layer(out_units, monkeypatch):
    """An MLP of at most NARROW_OUTPUT_UNITS outputs gives the values and weight
    gradients its own Dense output layer gives (a wider one is that Dense)."""
    keras.utils.set_random_seed(3)
    net = MLP(out_units, hidden_units=(32, 32), zero_init=False)
    net.build((None, 2))
    x = tf.constant(np.random.default_rng(0).normal(size=(50, 2)), "float32")

    def values_and_gradients():
        with tf.GradientTape() as tape:
            y = net(x)
            loss = tf.reduce_sum(tf.exp(0.1 * y))
        return [y.numpy()] + [g.numpy() for g in tape.gradient(loss, net.trainable_variables)]
    ours = values_and_gradients()
    monkeypatch.setattr(nets, "NARROW_OUTPUT_UNITS", 0)
    dense = values_and_gradients()
    assert len(ours) == len(dense) == 1 + 2 * 3
    for a, b in zip(ours, dense):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("params_first", [False, True])
@pytest.mark.parametrize("context_dim", [None, 3])
@pytest.mark.parametrize("event_dim, params", [(1, 2), (2, 2), (2, 23), (3, 1), (5, 2)])
def test_made_leaves_out_disconnected_units_with_the_same_numbers(event_dim, params,
                                                                  context_dim, params_first,
                                                                  monkeypatch):
    """MADE's products without its last data input and (unconditional) its first
    dimension's outputs give the values and gradients of the whole masked products."""
    keras.utils.set_random_seed(0)
    net = MADE(params, hidden_units=(16, 16), context_dim=context_dim, zero_init=False)
    net.build((None, event_dim))
    rng = np.random.default_rng(event_dim)
    x = tf.constant(rng.normal(size=(7, event_dim)), "float32")
    context = None if context_dim is None else tf.constant(rng.normal(size=(7, 3)), "float32")

    def values_and_gradients():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = net(x, context=context, params_first=params_first)
            loss = tf.reduce_sum(tf.sin(y))
        return [y.numpy()] + [g.numpy() for g in tape.gradient(loss, [x, *net.trainable_variables])]
    assert made.PRUNE_MADE
    pruned = values_and_gradients()
    monkeypatch.setattr(made, "PRUNE_MADE", False)
    whole = values_and_gradients()
    shape = (7, params, event_dim) if params_first else (7, event_dim, params)
    assert pruned[0].shape == whole[0].shape == shape
    for a, b in zip(pruned, whole):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    if context_dim is None and event_dim > 1:
        # the first dimension's parameters are the output bias alone
        first = whole[0][:, :, 0] if params_first else whole[0][:, 0, :]
        np.testing.assert_allclose(first, np.broadcast_to(first[:1], first.shape))


def _unregistered_activation(t):
    return t * 2


@keras.saving.register_keras_serializable(package="kerasflows_tests")
def _registered_activation(t):
    return t * 3


ACTIVATION_LAYERS = {cls.__name__: cls for cls in [
    MLP, layers.AffineCoupling, layers.AdditiveCoupling, layers.SplineCoupling,
    layers.MaskedAutoregressive, layers.InverseAutoregressive, layers.SplineAutoregressive,
    layers.ContinuousFlow, MADE]}


def with_activation(name, activation):
    """A small `ACTIVATION_LAYERS[name]` of this activation."""
    args = (2,) if name in ("MLP", "MADE") else ()     # out_units, params_per_dim
    return ACTIVATION_LAYERS[name](*args, hidden_units=(4,), activation=activation)


@pytest.mark.parametrize("activation", [lambda t: t * 2, _unregistered_activation, tf.nn.swish,
                                        "no_such_activation"],
                         ids=["lambda", "unregistered", "tf.nn.swish", "unknown name"])
@pytest.mark.parametrize("layer", sorted(ACTIVATION_LAYERS))
def test_an_activation_that_cannot_be_saved_is_refused_at_construction(layer, activation):
    """A lambda or an unregistered function was taken by the constructor, and the Flow
    that built the layer refused it (a lambda's message quoted a base64 blob)."""
    with pytest.raises(ValueError, match=r"(?s)Keras activation name.*"
                       r"register_keras_serializable.*Received: activation="):
        with_activation(layer, activation)


@pytest.mark.parametrize("activation", ["tanh", keras.activations.silu, tf.nn.relu,
                                        _registered_activation])
@pytest.mark.parametrize("layer", sorted(ACTIVATION_LAYERS))
def test_a_named_or_registered_activation_is_taken_and_round_trips(layer, activation):
    made_layer = with_activation(layer, activation)
    config = made_layer.get_config()
    again = type(made_layer).from_config(config)
    assert again.get_config()["activation"] == config["activation"]
    t = tf.constant([-1.5, 0.0, 2.0])
    np.testing.assert_allclose(keras.activations.get(config["activation"])(t),
                               keras.activations.get(activation)(t))


@pytest.mark.parametrize("kind", ["mlp", "made"])
@pytest.mark.parametrize("value", ["no", None, 0])
def test_zero_init_takes_true_or_false_only(kind, value):
    # "no" read as True (zero output layer), None and 0 as False
    with pytest.raises(ValueError, match=rf"`zero_init` must be True or False\. "
                                         rf"Received: zero_init={value!r}"):
        build(kind, zero_init=value)
    assert build(kind, zero_init=np.False_).zero_init is False
