"""Experiment (not the library's behaviour): spline couplings that also transform their first half.

zuko's `NSF(passes=2)` coupling on D-dimensional data gives the first D/2
coordinates a spline of their own (its parameters depend on nothing, so they
are learned constants) as well as conditioning the second half on them; our
`SplineCoupling` passes the first half through unchanged. This plugin
registers `kfboth:nsf_coupling`, our NSF coupling runner with
`SplineCoupling` patched in each job's process to do the same: a zero-
initialised (identity) parameter vector per masked coordinate, the spline
applied to the masked half, the conditioner fed the data-side masked half.
Used to test whether that difference explains the NLL gap to zuko (README,
Benchmarks):

    cd ../shared/bench
    python peers.py --plugin /work/main/benchmarks/kerasflows_plugin.py \\
        --plugin /work/main/benchmarks/coupling_both_halves_plugin.py \\
        --models kfboth:nsf_coupling --datasets moons,rings,pinwheel,digits --out /tmp/both.json
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kerasflows_plugin  # noqa: E402
from peers import register  # noqa: E402


def _patch():
    import tensorflow as tf
    from kerasflows.layers.base import batch_log_det
    from kerasflows.layers.splines import SplineCoupling
    if getattr(SplineCoupling, "_both_halves", False):
        return
    SplineCoupling._both_halves = True
    build_flow = SplineCoupling.build_flow

    def build_with_masked_spline(self, event_dim):
        build_flow(self, event_dim)
        self.masked_params = self.add_weight(shape=(self.masked, self.params_per_dim),
                                             initializer="zeros", name="masked_params")

    def coupling(self, x, context, inverse):
        x, context = self.check_inputs(x, context)
        x0, x1 = x[:, :self.masked], x[:, self.masked:]
        p = tf.transpose(tf.convert_to_tensor(self.masked_params))[:, :, None]  # [P, m, 1]
        if inverse:      # data -> base: the conditioner sees the data-side x0
            y1, ld1 = self.transform_part(x0, x1, context, True)
            y0, ld0 = self.knots.kernel(p, tf.transpose(x0), True)
        else:            # base -> data: transform x0 first, then condition on it
            y0, ld0 = self.knots.kernel(p, tf.transpose(x0), False)
            y1, ld1 = self.transform_part(tf.transpose(y0), x1, context, False)
        return (tf.concat([tf.transpose(y0), y1], -1),
                batch_log_det(ld1 + tf.reduce_sum(ld0, 0), x))

    SplineCoupling.build_flow = build_with_masked_spline
    SplineCoupling._coupling = coupling


@register("kfboth:nsf_coupling")
class BothHalvesNSFCoupling(kerasflows_plugin.KerasFlowsNSFCoupling):
    library = "kfboth"

    def build(self, dim, P):
        _patch()
        return super().build(dim, P)
