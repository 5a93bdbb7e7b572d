"""The conditioner networks' starting weights (`kerasflows.layers.nets`).

Hidden layers start as PyTorch's `nn.Linear` (weights and biases uniform in
+-1/sqrt(fan_in)); the output layer at zero unless `zero_init=False`. The
conformance suite checks the networks' maths through every flow layer.
"""

import keras
import numpy as np
import pytest

from kerasflows import models
from kerasflows.layers.nets import MADE, MLP


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
