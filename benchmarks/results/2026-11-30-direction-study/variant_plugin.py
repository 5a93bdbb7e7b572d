"""Throwaway: RealNVP variants for the digits NLL question (session 9)."""
import sys
sys.path.insert(0, "/work/main/benchmarks")
from kerasflows_plugin import KerasFlowsRealNVP
from peers import register


def _random_out(flow):
    import numpy as np
    rng = np.random.default_rng(1234)
    for layer in flow.flow_layers:
        net = getattr(layer, "net", None)
        if net is None:
            continue
        k, b = net.out.kernel, net.out.bias
        lim = 1 / np.sqrt(k.shape[0])
        k.assign(rng.uniform(-lim, lim, k.shape).astype("float32"))
        b.assign(rng.uniform(-lim, lim, b.shape).astype("float32"))


class _Variant(KerasFlowsRealNVP):
    random_out = False

    def build(self, dim, P):
        super().build(dim, P)
        if self.random_out:
            _random_out(self.flow)


@register("kerasflows:realnvp_c7")
class C7(_Variant):
    recipe_kwargs = {"max_log_scale": 7.0}


@register("kerasflows:realnvp_rand")
class Rand(_Variant):
    random_out = True


@register("kerasflows:realnvp_c7rand")
class C7Rand(_Variant):
    recipe_kwargs = {"max_log_scale": 7.0}
    random_out = True


@register("kerasflows:realnvp_halves")
class Halves(_Variant):
    recipe_kwargs = {"mask": "halves"}


def _flip_affine():
    """Affine maps parameterised in the density direction (zuko / nflows):
    z = x * exp(a) + b, so x = (z - b) * exp(-a)."""
    from kerasflows.layers import coupling, autoregressive
    from kerasflows.layers.coupling import affine, soft_clamp

    def coupling_elementwise(self, params, x1, inverse):
        return affine(params[..., 0], soft_clamp(params[..., 1], self.max_log_scale), x1,
                      not inverse)

    def ar_elementwise(self, params, v, inverse):
        return affine(params[:, 0], soft_clamp(params[:, 1], self.max_log_scale), v,
                      not inverse)
    coupling.AffineCoupling.elementwise = coupling_elementwise
    autoregressive.MaskedAutoregressive.elementwise = ar_elementwise


class _Flipped:
    def build(self, dim, P):
        _flip_affine()
        super().build(dim, P)


@register("kerasflows:realnvp_flip")
class RealNVPFlip(_Flipped, KerasFlowsRealNVP):
    pass


from kerasflows_plugin import KerasFlowsMAF


@register("kerasflows:maf_flip")
class MAFFlip(_Flipped, KerasFlowsMAF):
    pass


def _flip_spline():
    """Splines applied in the density direction (zuko / nflows): z = RQS(x)."""
    from kerasflows.layers import splines
    orig = splines.SplineKnots.transform

    def transform(self, params, v, inverse=False, params_first=False):
        return orig(self, params, v, not inverse, params_first)
    splines.SplineKnots.transform = transform


from kerasflows_plugin import KerasFlowsNSF, KerasFlowsNSFCoupling


class _SplineFlipped:
    def build(self, dim, P):
        _flip_spline()
        super().build(dim, P)


@register("kerasflows:nsf_flip")
class NSFFlip(_SplineFlipped, KerasFlowsNSF):
    pass


@register("kerasflows:nsf_coupling_flip")
class NSFCFlip(_SplineFlipped, KerasFlowsNSFCoupling):
    pass
