"""`AutoGraphFree`: a mixin whose graph entry points AutoGraph calls as written.

A `tf.function` made with AutoGraph on (TensorFlow's default, and what a
Keras user's own train step or a custom model's `fit` is traced with)
rewrites, when it traces, every function of user code it calls, and the
functions those call in turn: it parses their source, converts Python control
flow to graph control flow, and compiles the result. Modules of TensorFlow,
Keras and TFP are left as written; kerasflows would not be. A user's
`tf.function(lambda x: flow.log_prob(x))` on a 3-layer 2-D RealNVP had
AutoGraph rewrite 66 of kerasflows' functions on its first trace, which
took 3.52 s against 0.21 s with them left as written; for NSF 5.05 s
against 0.62 s, and a hand-written NSF train step (tape, gradients, Adam)
7.71 s against 3.14 s (medians of 3 fresh processes,
`benchmarks/autograph_trace.py`,
`benchmarks/results/2026-12-05-autograph-trace.json`).

kerasflows needs no rewriting: its code runs in graphs with AutoGraph off
(its own `tf.function`s, the train step and the exported signatures, are
all made with `autograph=False`), and branches on tensors go through
`tf.cond` / `tf.where` / `tf.while_loop` explicitly. So the methods code
calls inside its graphs (`ENTRY_POINTS`: `log_prob`, `sample`, `forward`,
`bijector`, ...), wherever a class that takes this mixin defines them
(flows, flow layers, and their subclasses, users' included), carry the mark
AutoGraph gives its own artifacts (`autograph_info__`): AutoGraph calls
them as they are, and what they call is then plain Python. Unlike
`tf.autograph.experimental.do_not_convert`, the mark does not switch
AutoGraph off for the call: a user's `tf.function` traced inside one (a
variational target's, say) is still converted. With a TensorFlow that no
longer honours the mark, the methods are converted as before: slower to
trace, the same graphs.
"""

import inspect

__all__ = ["AutoGraphFree", "ENTRY_POINTS"]

#: The methods of flows and flow layers that code calls in its own graphs.
ENTRY_POINTS = frozenset({
    "forward", "inverse", "forward_and_log_det", "inverse_and_log_det", "bijector",
    "get_bijector", "get_distribution", "log_prob", "base_log_prob", "sample",
    "sample_and_log_prob", "trace", "trace_inverse", "log_weights", "weight_matrix"})

#: The attribute by which AutoGraph knows its own functions
#: (`tensorflow/python/autograph/impl/api.py`, `is_autograph_artifact`).
_MARK = "autograph_info__"


def _mark(cls):
    for name, value in vars(cls).items():
        if name in ENTRY_POINTS and inspect.isfunction(value) and not hasattr(value, _MARK):
            setattr(value, _MARK, {})


class AutoGraphFree:
    """Mixin: AutoGraph calls the `ENTRY_POINTS` methods of this class's
    subclasses (and so everything they call) as they are written; see the
    module docstring."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _mark(cls)
