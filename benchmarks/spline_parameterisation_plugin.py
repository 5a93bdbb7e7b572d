"""Experiment (not the library's behaviour): zuko's knot parameterisation in our spline runners.

Registers `kfvar:nsf` and `kfvar:nsf_coupling`, our NSF runners with
`SplineKnots` patched in each job's process according to `KF_VARIANT`:
`exp` makes the interior knot slopes `exp(r / (1 + |r| / c))` with
`c = -log(min_slope)` (as zuko does) instead of `min_slope + softplus(r + offset)`;
`clamp_exp` also soft-clamps the bin logits, `r / (1 + 2|r| / c)`, before the
softmax. Both keep a zero output the identity. `init` (with either or alone)
starts the conditioners' output layer random, as PyTorch's `nn.Linear` (and
zuko) do, instead of at zero. Used to test whether the
parameterisation explains the NLL gap to zuko on rings (README, Benchmarks):

    cd ../shared/bench
    KF_VARIANT=exp python peers.py --plugin /work/main/benchmarks/kerasflows_plugin.py \\
        --plugin /work/main/benchmarks/spline_parameterisation_plugin.py \\
        --models kfvar:nsf,kfvar:nsf_coupling --datasets rings,moons --out /tmp/exp.json
"""

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kerasflows_plugin  # noqa: E402
from peers import register  # noqa: E402


def _patch(variant):
    import tensorflow as tf
    from kerasflows.layers.spline_knots import SplineKnots
    c = -math.log(1e-3)
    if "clamp" in variant:
        sizes = SplineKnots._sizes
        SplineKnots._sizes = lambda self, raw, minimum, axis=-1: sizes(
            self, raw / (1 + 2 * tf.abs(raw) / c), minimum, axis)
    if "exp" in variant:
        SplineKnots._slope = lambda self, raw: tf.exp(raw / (1 + tf.abs(raw) / c))
    if "init" in variant:
        from kerasflows.layers import made, nets
        for cls in (nets.MLP, made.MADE):
            init = cls.__init__

            def random_output(self, *args, _init=init, **kwargs):
                kwargs["zero_init"] = False
                _init(self, *args, **kwargs)
            cls.__init__ = random_output


class _Variant:
    library = "kfvar"

    def build(self, dim, P):
        _patch(os.environ.get("KF_VARIANT", ""))
        return super().build(dim, P)


@register("kfvar:nsf")
class VariantNSF(_Variant, kerasflows_plugin.KerasFlowsNSF):
    pass


@register("kfvar:nsf_coupling")
class VariantNSFCoupling(_Variant, kerasflows_plugin.KerasFlowsNSFCoupling):
    pass
