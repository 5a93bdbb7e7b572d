"""Registries of every shipped layer and ready-made flow, for the conformance suite.

Each layer entry is `id -> (factory(context_dim, dtype), needs_split, conditional)`:
`needs_split` layers (couplings) are tested at event_dim 3 as well (odd split);
`conditional` layers are also tested with a context.
"""

from kerasflows import layers as L
from kerasflows import models as M

LAYERS = {
    "affine_coupling": (lambda c, d: L.AffineCoupling(hidden_units=(16,), context_dim=c, dtype=d),
                        True, True),
    "affine_coupling_forward": (lambda c, d: L.AffineCoupling(
        hidden_units=(16,), context_dim=c, dtype=d, affine_direction="forward"), True, True),
    "additive_coupling": (lambda c, d: L.AdditiveCoupling(hidden_units=(16,), context_dim=c,
                                                          dtype=d), True, True),
    "spline_coupling": (lambda c, d: L.SplineCoupling(bins=5, bound=3.0, hidden_units=(16,),
                                                      context_dim=c, dtype=d), True, True),
    "spline_coupling_forward": (lambda c, d: L.SplineCoupling(
        bins=5, bound=3.0, hidden_units=(16,), context_dim=c, dtype=d, spline_direction="forward"),
        True, True),
    "masked_autoregressive": (lambda c, d: L.MaskedAutoregressive(
        hidden_units=(16, 16), context_dim=c, dtype=d), False, True),
    "masked_autoregressive_forward": (lambda c, d: L.MaskedAutoregressive(
        hidden_units=(16, 16), context_dim=c, dtype=d, affine_direction="forward"), False, True),
    "inverse_autoregressive": (lambda c, d: L.InverseAutoregressive(
        hidden_units=(16, 16), context_dim=c, dtype=d), False, True),
    "spline_autoregressive": (lambda c, d: L.SplineAutoregressive(
        bins=5, bound=3.0, hidden_units=(16, 16), context_dim=c, dtype=d), False, True),
    "spline_autoregressive_forward": (lambda c, d: L.SplineAutoregressive(
        bins=5, bound=3.0, hidden_units=(16, 16), context_dim=c, dtype=d,
        spline_direction="forward"), False, True),
    "permute_reverse": (lambda c, d: L.Permute("reverse", dtype=d), False, False),
    "permute_random": (lambda c, d: L.Permute("random", seed=3, dtype=d), False, False),
    "invertible_linear": (lambda c, d: L.InvertibleLinear(seed=1, dtype=d), False, False),
    "actnorm": (lambda c, d: L.ActNorm(dtype=d), False, False),
    "batchnorm": (lambda c, d: L.BatchNorm(dtype=d), False, False),
    "elementwise_affine": (lambda c, d: L.ElementwiseAffine(dtype=d), False, False),
    "sigmoid": (lambda c, d: L.Sigmoid(dtype=d), False, False),
    "exp": (lambda c, d: L.Exp(dtype=d), False, False),
    # forward-only: check_flow_layer checks the forward log-det against autodiff
    "planar": (lambda c, d: L.Planar(dtype=d), False, False),
    "radial": (lambda c, d: L.Radial(dtype=d), False, False),
}
# ContinuousFlow (FFJORD) runs an ODE solver per call; its check_flow_layer
# runs in tests/test_continuous.py with tight solver tolerances.

#: Layers whose inputs must lie in (0, 1) for the inverse: tested separately.
INTERVAL_LAYERS = {"logit": lambda d: L.Logit(dtype=d)}

SMALL = dict(num_layers=3, hidden_units=(16, 16))

FLOWS = {
    "RealNVP": lambda D, c, d: M.RealNVP(D, context_dim=c, dtype=d, **SMALL),
    "NICE": lambda D, c, d: M.NICE(D, context_dim=c, dtype=d, **SMALL),
    "MAF": lambda D, c, d: M.MAF(D, context_dim=c, dtype=d, **SMALL),
    "IAF": lambda D, c, d: M.IAF(D, context_dim=c, dtype=d, **SMALL),
    "NSF": lambda D, c, d: M.NSF(D, context_dim=c, dtype=d, bins=4, bound=3.0, **SMALL),
    "NSF_autoregressive": lambda D, c, d: M.NSF(D, context_dim=c, dtype=d, bins=4, bound=3.0,
                                                autoregressive=True, num_layers=2,
                                                hidden_units=(16, 16)),
    "Glow": lambda D, c, d: M.Glow(D, context_dim=c, dtype=d, **SMALL),
}
