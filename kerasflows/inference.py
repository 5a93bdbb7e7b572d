"""Faster exact evaluation of a trained flow: `tabulate`.

The conditioner of a coupling layer on 2-D data (or any coupling layer with
`num_masked=1` and no context) sees one number, the pass-through coordinate.
A ReLU network of one number is piecewise linear, so `tabulate` replaces it
by its exact table of pieces (see
`kerasflows.layers.piecewise.PiecewiseLinear`): a lookup and one
multiply-add per output instead of the dense layers, with the same numbers
up to float rounding (the table is built in float64, so it is at least as
close to the exact network as the float32 layers). The visualizer evaluates
flows this way; `benchmarks/viz_bench.py` (with and without `--no-tables`)
measures what it saves there.

The copy runs in `eval_mode="graph"`, each table lookup compiled by XLA on
its own (one compiled function for all the tables of the same shape, the
tables its arguments: `PiecewiseLinear.share_shapes` pads a flow's tables to
the same pieces and cells, so a new input shape compiles once per table
shape, not per layer, and a reloaded flow of the same shapes compiles
nothing); a spline coupling asks its table for the parameters with the bins
first and runs the spline kernel XLA-compiled on its own too. Compiling the
whole flow as one XLA cluster is slower here: XLA fuses the table's gathers
into the spline's exponentials, which then no longer vectorise.
"""

from kerasflows.layers.coupling import CouplingLayer
from kerasflows.layers.piecewise import PiecewiseLinear

__all__ = ["tabulate"]


def tabulate(flow):
    """An inference copy of `flow` whose one-input ReLU coupling conditioners are tables.

    The copy has the same configuration, weights and `eval_mode`, except
    that `"xla"` becomes `"graph"` when a layer was tabulated (see the
    module notes). Each `CouplingLayer` (affine, additive or spline) whose
    conditioner has one input (`num_masked=1`, as in every 2-D flow, and no
    context) and ReLU activations evaluates a `PiecewiseLinear` table;
    every other layer runs as before. The tables
    are a snapshot of the weights: the copy is for evaluation only (its
    conditioner weights no longer affect its output, so do not train it).

    Returns:
        `(copy, names)`: the new `Flow` and the names of the layers that
        were tabulated (empty when none qualifies).

    Raises:
        TypeError: `flow` is not a `kerasflows.Flow` (a path, a layer: load a
            saved flow with `keras.saving.load_model` first).
    """
    from kerasflows.flow import Flow        # kerasflows.flow's package imports this module

    if not isinstance(flow, Flow):
        raise TypeError("`flow` must be a kerasflows.Flow (load a saved one with "
                        f"keras.saving.load_model first). Received: flow={flow!r}")
    copy = _copy_of(flow)
    names = []
    for layer in copy.flow_layers:
        if not isinstance(layer, CouplingLayer):
            continue
        try:
            layer.table = PiecewiseLinear.from_mlp(layer.net)
        except ValueError:
            continue
        names.append(layer.name)
    # The same pieces and cells for every table of the flow: the compiled lookups are
    # shared, so XLA compiles each input shape once per table shape, not per layer.
    PiecewiseLinear.share_shapes(layer.table for layer in copy.flow_layers
                                 if getattr(layer, "table", None) is not None)
    copy.eval_mode = "graph" if names and flow.eval_mode == "xla" else flow.eval_mode
    return copy, tuple(names)


def _copy_of(flow):
    """A new flow of `flow`'s configuration and weights that computes what it computes.

    `set_weights` restores an adapted `keras.layers.Normalization`'s statistics
    (a context encoder, as the README recommends) but not the mean and variance
    it normalizes by, which Keras derives from them in `finalize_state` (as
    `load_model` does): it is called on every sublayer that has one.
    """
    copy = type(flow).from_config(flow.get_config())
    copy.set_weights(flow.get_weights())
    for layer in copy._flatten_layers():
        if hasattr(layer, "finalize_state"):
            layer.finalize_state()
    return copy
