"""Flow layers: Keras 3 layers that own their weights and expose TFP bijectors."""

from kerasflows.layers.autoregressive import InverseAutoregressive, MaskedAutoregressive
from kerasflows.layers.base import FlowLayer, NoInverseError
from kerasflows.layers.continuous import ContinuousFlow
from kerasflows.layers.coupling import AdditiveCoupling, AffineCoupling, CouplingLayer
from kerasflows.layers.embedding import ClassEmbedding
from kerasflows.layers.elementwise import ElementwiseAffine, Exp, Logit, Sigmoid
from kerasflows.layers.linear import InvertibleLinear
from kerasflows.layers.made import MADE
from kerasflows.layers.nets import MLP
from kerasflows.layers.piecewise import PiecewiseLinear
from kerasflows.layers.normalization import ActNorm, BatchNorm
from kerasflows.layers.permute import Permute
from kerasflows.layers.planar import Planar, Radial
from kerasflows.layers.splines import SplineAutoregressive, SplineCoupling

__all__ = [
    "FlowLayer", "NoInverseError", "CouplingLayer", "AffineCoupling", "AdditiveCoupling", "MLP", "MADE",
    "ClassEmbedding",
    "Permute", "InvertibleLinear", "ActNorm", "BatchNorm",
    "Sigmoid", "Logit", "Exp", "ElementwiseAffine",
    "MaskedAutoregressive", "InverseAutoregressive", "SplineCoupling", "SplineAutoregressive",
    "Planar", "Radial", "ContinuousFlow", "PiecewiseLinear",
]
