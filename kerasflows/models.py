"""Ready-made flows, in the style of `keras.applications`: functions returning a `Flow`.

Each recipe takes `event_dim`, `num_layers`, `hidden_units`, `context_dim`
and puts a reversing permutation between layers where the family needs one
(coupling and autoregressive layers leave some dimensions, or their order,
unchanged). Extra keyword arguments go to `Flow` (`base`, `name`, `dtype`).

Example:

```python
flow = kerasflows.models.NSF(event_dim=2, num_layers=5, bins=8, bound=5.0)
```
"""

from kerasflows.flow import Flow
from kerasflows.layers.autoregressive import InverseAutoregressive, MaskedAutoregressive
from kerasflows.layers.base import check_positive_int
from kerasflows.layers.coupling import AdditiveCoupling, AffineCoupling
from kerasflows.layers.elementwise import ElementwiseAffine
from kerasflows.layers.linear import InvertibleLinear
from kerasflows.layers.normalization import ActNorm
from kerasflows.layers.permute import Permute
from kerasflows.layers.splines import SplineAutoregressive, SplineCoupling

__all__ = ["RealNVP", "NICE", "MAF", "IAF", "NSF", "Glow"]

_FLOW_KWARGS = ("base", "name", "dtype")


def _stack(make_step, event_dim, num_layers, context_dim, permute, flow_kw, tail=()):
    """Builds `num_layers` steps from `make_step(i)` with permutations between them."""
    event_dim = check_positive_int("event_dim", event_dim)
    num_layers = check_positive_int("num_layers", num_layers)
    dtype = flow_kw.get("dtype")
    layers = []
    for i in range(num_layers):
        if i and permute:
            layers.append(Permute("reverse", dtype=dtype, name=f"permute_{i}"))
        layers.extend(make_step(i))
    layers.extend(tail)
    return Flow(layers, event_dim, context_dim=context_dim, **flow_kw)


def _common(kwargs, hidden_units, context_dim):
    """Splits a recipe's keyword arguments into the Flow's and every layer's."""
    flow_kw = {k: v for k, v in kwargs.items() if k in _FLOW_KWARGS}
    layer_kw = {k: v for k, v in kwargs.items() if k not in _FLOW_KWARGS}
    layer_kw.update(hidden_units=hidden_units, context_dim=context_dim, dtype=flow_kw.get("dtype"))
    return flow_kw, layer_kw


def RealNVP(event_dim, num_layers=5, hidden_units=(64, 64), context_dim=None, **kwargs):
    """RealNVP (Dinh et al. 2017): affine coupling layers with reversing permutations.

    Extra layer keyword arguments (`activation`, `max_log_scale`) go to every
    `AffineCoupling`; `base`, `name`, `dtype` go to the `Flow`.
    """
    flow_kw, layer_kw = _common(kwargs, hidden_units, context_dim)
    make = lambda i: [AffineCoupling(name=f"coupling_{i}", **layer_kw)]
    return _stack(make, event_dim, num_layers, context_dim, True, flow_kw)


def NICE(event_dim, num_layers=5, hidden_units=(64, 64), context_dim=None, **kwargs):
    """NICE (Dinh et al. 2015): additive couplings and a final learned diagonal scaling."""
    flow_kw, layer_kw = _common(kwargs, hidden_units, context_dim)
    make = lambda i: [AdditiveCoupling(name=f"coupling_{i}", **layer_kw)]
    tail = [ElementwiseAffine(dtype=flow_kw.get("dtype"), name="scaling")]
    return _stack(make, event_dim, num_layers, context_dim, True, flow_kw, tail)


def MAF(event_dim, num_layers=5, hidden_units=(64, 64), context_dim=None, **kwargs):
    """Masked autoregressive flow (Papamakarios et al. 2017): fast density, sequential sampling."""
    flow_kw, layer_kw = _common(kwargs, hidden_units, context_dim)
    make = lambda i: [MaskedAutoregressive(name=f"maf_{i}", **layer_kw)]
    return _stack(make, event_dim, num_layers, context_dim, True, flow_kw)


def IAF(event_dim, num_layers=5, hidden_units=(64, 64), context_dim=None, **kwargs):
    """Inverse autoregressive flow (Kingma et al. 2016): fast sampling, sequential density."""
    flow_kw, layer_kw = _common(kwargs, hidden_units, context_dim)
    make = lambda i: [InverseAutoregressive(name=f"iaf_{i}", **layer_kw)]
    return _stack(make, event_dim, num_layers, context_dim, True, flow_kw)


def NSF(event_dim, num_layers=5, hidden_units=(64, 64), context_dim=None, bins=8, bound=5.0,
        autoregressive=False, **kwargs):
    """Neural spline flow (Durkan et al. 2019): rational-quadratic spline layers.

    Args:
        bins: spline bins per dimension.
        bound: the splines act on [-bound, bound], identity outside.
        autoregressive: use `SplineAutoregressive` instead of `SplineCoupling`.
    """
    flow_kw, layer_kw = _common(kwargs, hidden_units, context_dim)
    cls = SplineAutoregressive if autoregressive else SplineCoupling
    make = lambda i: [cls(bins=bins, bound=bound, name=f"spline_{i}", **layer_kw)]
    return _stack(make, event_dim, num_layers, context_dim, True, flow_kw)


def Glow(event_dim, num_layers=5, hidden_units=(64, 64), context_dim=None, **kwargs):
    """Glow-style steps (Kingma & Dhariwal 2018): ActNorm, InvertibleLinear, AffineCoupling.

    Listed in the forward (base to data) order, each step is coupling, then
    the learned linear map, then ActNorm, so data meet ActNorm first.
    """
    flow_kw, layer_kw = _common(kwargs, hidden_units, context_dim)
    dtype = flow_kw.get("dtype")

    def make(i):
        return [AffineCoupling(name=f"coupling_{i}", **layer_kw),
                InvertibleLinear(seed=i, dtype=dtype, name=f"linear_{i}"),
                ActNorm(dtype=dtype, name=f"actnorm_{i}")]
    return _stack(make, event_dim, num_layers, context_dim, False, flow_kw)
