"""Ready-made flows, in the style of `keras.applications`: functions returning a `Flow`.

Each recipe takes `event_dim`, `num_layers`, `hidden_units`, `context_dim`
and puts a reversing permutation between layers where the family needs one
(coupling and autoregressive layers leave some dimensions, or their order,
unchanged). The coupling recipes (`RealNVP`, `NICE`, `NSF`, `Glow`) split
the dimensions, so they need `event_dim >= 2` (a ValueError says so); for
one dimension use `MAF`, `IAF` or `NSF(autoregressive=True)`. Extra keyword arguments go to `Flow` (`base`, `name`, `dtype`,
`context_encoder`: the layers are then conditioned on the encoder's
features) or to every layer. `standardize=True` puts an `ActNorm` named
`standardize` at the data end, which `fit` sets from the first batch to the
data's mean and standard deviation per dimension (trained on from there):
for data not on a unit scale, which the conditioners' initialisation and a
spline's `[-bound, bound]` assume.

Example:

```python
flow = kerasflows.models.NSF(event_dim=2, num_layers=5, bins=8, bound=5.0)
flow = kerasflows.models.MAF(event_dim=8, standardize=True)   # data in any units
```
"""

import inspect

import keras
import numpy as np

from kerasflows.flow import Flow, encoded_context_dim
from kerasflows.layers.autoregressive import InverseAutoregressive, MaskedAutoregressive
from kerasflows.layers.base import check_bool, check_positive_int
from kerasflows.layers.coupling import AdditiveCoupling, AffineCoupling
from kerasflows.layers.elementwise import ElementwiseAffine
from kerasflows.layers.linear import InvertibleLinear
from kerasflows.layers.normalization import ActNorm
from kerasflows.layers.permute import Permute
from kerasflows.layers.splines import SplineAutoregressive, SplineCoupling

__all__ = ["RealNVP", "NICE", "MAF", "IAF", "NSF", "Glow", "MASKS"]

_FLOW_KWARGS = ("base", "name", "dtype", "context_encoder", "standardize")
#: How coupling recipes split the dimensions: "checkerboard" (each coupling layer
#: conditions one parity class of the dimensions on the other, alternating) or
#: "halves" (the leading half, then the trailing half).
MASKS = ("checkerboard", "halves")


def _check_splittable(recipe, event_dim):
    """Refuses one dimension for coupling recipe `recipe`: a coupling layer
    transforms one part of the dimensions given the other, and one has no parts."""
    event_dim = check_positive_int("event_dim", event_dim)
    if event_dim < 2:
        raise ValueError(f"{recipe} needs event_dim >= 2: its coupling layers split the "
                         "dimensions in two, transforming one part given the other. "
                         f"Received: event_dim={event_dim}. For one dimension, use MAF, IAF "
                         "or NSF(autoregressive=True).")


def _coupling_split(mask, event_dim, num_layers, dtype):
    """`(num_masked(i), tail)` for coupling recipes with `mask`.

    "checkerboard" puts a fixed `Permute` at the data end that gathers the
    even dimensions ahead of the odd ones, so that with the reversing
    permutations between layers each coupling layer passes one parity class
    through and transforms the other (as zuko's RealNVP and the checkerboard
    masks of Dinh et al. 2017), the classes alternating from layer to layer.
    With an odd `event_dim` the classes differ in size, hence per-layer
    `num_masked`. For `event_dim <= 2` both masks are the same flow (no extra
    layer).
    """
    if mask not in MASKS:
        raise ValueError(f"`mask` must be one of {MASKS}. Received: mask={mask!r}")
    event_dim = check_positive_int("event_dim", event_dim)
    if mask == "halves" or event_dim <= 2:
        return (lambda i: None), []
    evens, odds = (event_dim + 1) // 2, event_dim // 2
    gather = list(range(0, event_dim, 2)) + list(range(1, event_dim, 2))
    # Permute's inverse (data to base) gathers `gather`: the last coupling layer
    # meets the data as [evens, odds]; each reversal towards the base swaps
    # which class leads
    num_masked = lambda i: evens if (num_layers - 1 - i) % 2 == 0 else odds
    return num_masked, [Permute(np.argsort(gather).tolist(), dtype=dtype, name="checkerboard")]


def _stack(make_step, event_dim, num_layers, context_dim, permute, flow_kw, tail=()):
    """Builds `num_layers` steps from `make_step(i)` with permutations between them,
    then `tail` and, with `flow_kw["standardize"]`, the standardising `ActNorm`."""
    event_dim = check_positive_int("event_dim", event_dim)
    num_layers = check_positive_int("num_layers", num_layers)
    flow_kw = dict(flow_kw)
    standardize = check_bool("standardize", flow_kw.pop("standardize", False))
    dtype = flow_kw.get("dtype")
    layers = []
    for i in range(num_layers):
        if i and permute:
            layers.append(Permute("reverse", dtype=dtype, name=f"permute_{i}"))
        layers.extend(make_step(i))
    layers.extend(tail)
    if standardize:
        layers.append(ActNorm(dtype=dtype, name="standardize"))
    return Flow(layers, event_dim, context_dim=context_dim, **flow_kw)


def _layer_keywords(layer_class):
    """The keyword arguments `layer_class(...)` names, through its bases up to
    `keras.layers.Layer` (whose own catch-all `**kwargs` is not counted)."""
    names = set()
    for klass in layer_class.__mro__:
        if "__init__" in vars(klass):
            names.update(p.name for p in inspect.signature(klass.__init__).parameters.values()
                         if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if klass is keras.layers.Layer:
            break
    return names - {"self"}


def _common(kwargs, hidden_units, context_dim, recipe, layer_class, coupling=False):
    """Splits recipe `recipe`'s keyword arguments into the Flow's and every
    `layer_class` layer's, refusing a name neither takes (by the recipe's name:
    a typo is the caller's, not the layer's); a coupling recipe's layers take
    `num_masked` from its `mask`, not from them."""
    if coupling and "num_masked" in kwargs:
        raise ValueError(f"{recipe} sets each coupling layer's `num_masked` from `mask` "
                         f"(\"checkerboard\" or \"halves\"); received num_masked="
                         f"{kwargs['num_masked']!r}. For other splits, build a "
                         "kerasflows.Flow from coupling layers.")
    flow_kw = {k: v for k, v in kwargs.items() if k in _FLOW_KWARGS}
    layer_kw = {k: v for k, v in kwargs.items() if k not in _FLOW_KWARGS}
    known = _layer_keywords(layer_class)
    unknown = sorted(k for k in layer_kw if k not in known)
    if unknown:
        takes = sorted(known - {"name", "dtype", "hidden_units", "context_dim", "num_masked",
                                "activity_regularizer"})         # (refused by FlowLayer)
        raise TypeError(f"{recipe}() got unexpected keyword argument(s) {unknown}. Besides "
                        f"its own, it takes the Flow's {list(_FLOW_KWARGS)} and, for every "
                        f"{layer_class.__name__}, {takes}.")
    if flow_kw.get("context_encoder") is not None:
        # the layers are conditioned on the encoder's features, not the raw context
        context_dim = encoded_context_dim(flow_kw["context_encoder"], context_dim)
    layer_kw.update(hidden_units=hidden_units, context_dim=context_dim, dtype=flow_kw.get("dtype"))
    return flow_kw, layer_kw


def RealNVP(event_dim, num_layers=5, hidden_units=(64, 64), context_dim=None,
            mask="checkerboard", **kwargs):
    """RealNVP (Dinh et al. 2017): affine coupling layers with reversing permutations.

    Args:
        mask: "checkerboard" (default: each layer transforms one parity class
            of the dimensions given the other, alternating, as zuko's
            RealNVP) or "halves" (the trailing half given the leading half,
            as TFP's `RealNVP`). The same flow for `event_dim <= 2`.

    Extra layer keyword arguments (`activation`, `max_log_scale`,
    `affine_direction`) go to every `AffineCoupling`; `base`, `name`, `dtype`,
    `context_encoder` go to the `Flow`.
    """
    flow_kw, layer_kw = _common(kwargs, hidden_units, context_dim, "RealNVP", AffineCoupling,
                               coupling=True)
    _check_splittable("RealNVP", event_dim)
    num_masked, tail = _coupling_split(mask, event_dim, num_layers, flow_kw.get("dtype"))
    make = lambda i: [AffineCoupling(name=f"coupling_{i}", num_masked=num_masked(i), **layer_kw)]
    return _stack(make, event_dim, num_layers, context_dim, True, flow_kw, tail)


def NICE(event_dim, num_layers=5, hidden_units=(64, 64), context_dim=None,
         mask="checkerboard", **kwargs):
    """NICE (Dinh et al. 2015): additive couplings and a final learned diagonal scaling.

    `mask` as in `RealNVP`.
    """
    flow_kw, layer_kw = _common(kwargs, hidden_units, context_dim, "NICE", AdditiveCoupling,
                               coupling=True)
    _check_splittable("NICE", event_dim)
    num_masked, split = _coupling_split(mask, event_dim, num_layers, flow_kw.get("dtype"))
    make = lambda i: [AdditiveCoupling(name=f"coupling_{i}", num_masked=num_masked(i),
                                       **layer_kw)]
    tail = split + [ElementwiseAffine(dtype=flow_kw.get("dtype"), name="scaling")]
    return _stack(make, event_dim, num_layers, context_dim, True, flow_kw, tail)


def MAF(event_dim, num_layers=5, hidden_units=(64, 64), context_dim=None, **kwargs):
    """Masked autoregressive flow (Papamakarios et al. 2017): fast density, sequential sampling.

    Extra layer keyword arguments (`activation`, `max_log_scale`,
    `affine_direction`) go to every `MaskedAutoregressive`; `base`, `name`,
    `dtype`, `context_encoder` go to the `Flow`.
    """
    flow_kw, layer_kw = _common(kwargs, hidden_units, context_dim, "MAF", MaskedAutoregressive)
    make = lambda i: [MaskedAutoregressive(name=f"maf_{i}", **layer_kw)]
    return _stack(make, event_dim, num_layers, context_dim, True, flow_kw)


def IAF(event_dim, num_layers=5, hidden_units=(64, 64), context_dim=None, **kwargs):
    """Inverse autoregressive flow (Kingma et al. 2016): fast sampling, sequential density.

    Extra layer keyword arguments as `MAF`, for every `InverseAutoregressive`.
    """
    flow_kw, layer_kw = _common(kwargs, hidden_units, context_dim, "IAF", InverseAutoregressive)
    make = lambda i: [InverseAutoregressive(name=f"iaf_{i}", **layer_kw)]
    return _stack(make, event_dim, num_layers, context_dim, True, flow_kw)


def NSF(event_dim, num_layers=5, hidden_units=(64, 64), context_dim=None, bins=8, bound=5.0,
        autoregressive=False, mask="halves", **kwargs):
    """Neural spline flow (Durkan et al. 2019): rational-quadratic spline layers.

    Args:
        bins: spline bins per dimension.
        bound: the splines act on [-bound, bound], identity outside.
        autoregressive: True or False (a NumPy bool too): use
            `SplineAutoregressive` instead of `SplineCoupling`.
        mask: for the coupling layers, "halves" (default: each layer
            transforms the trailing half given the leading half, between
            reversals) or "checkerboard" (one parity class given the other,
            alternating, as `RealNVP`'s default and the alternating masks of
            Durkan et al.'s tabular experiments). The same flow for
            `event_dim <= 2`; the autoregressive layers take none.
    """
    autoregressive = check_bool("autoregressive", autoregressive)
    flow_kw, layer_kw = _common(kwargs, hidden_units, context_dim, "NSF",
                               SplineAutoregressive if autoregressive else SplineCoupling,
                               coupling=not autoregressive)
    if autoregressive:
        if mask != "halves":
            raise ValueError(f"`mask` applies to the coupling layers; autoregressive layers "
                             f"condition each dimension on all before it. Received: "
                             f"mask={mask!r}, autoregressive=True")
        make = lambda i: [SplineAutoregressive(bins=bins, bound=bound, name=f"spline_{i}",
                                               **layer_kw)]
        return _stack(make, event_dim, num_layers, context_dim, True, flow_kw)
    _check_splittable("NSF", event_dim)
    num_masked, tail = _coupling_split(mask, event_dim, num_layers, flow_kw.get("dtype"))
    make = lambda i: [SplineCoupling(bins=bins, bound=bound, name=f"spline_{i}",
                                     num_masked=num_masked(i), **layer_kw)]
    return _stack(make, event_dim, num_layers, context_dim, True, flow_kw, tail)


def Glow(event_dim, num_layers=5, hidden_units=(64, 64), context_dim=None, **kwargs):
    """Glow-style steps (Kingma & Dhariwal 2018): ActNorm, InvertibleLinear, AffineCoupling.

    Listed in the forward (base to data) order, each step is coupling, then
    the learned linear map, then ActNorm, so data meet ActNorm first.
    """
    flow_kw, layer_kw = _common(kwargs, hidden_units, context_dim, "Glow", AffineCoupling)
    _check_splittable("Glow", event_dim)
    dtype = flow_kw.get("dtype")

    def make(i):
        return [AffineCoupling(name=f"coupling_{i}", **layer_kw),
                InvertibleLinear(seed=i, dtype=dtype, name=f"linear_{i}"),
                ActNorm(dtype=dtype, name=f"actnorm_{i}")]
    return _stack(make, event_dim, num_layers, context_dim, False, flow_kw)
