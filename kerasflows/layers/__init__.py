"""Flow layers: Keras 3 layers that own their weights and expose TFP bijectors."""

from kerasflows.layers.base import FlowLayer
from kerasflows.layers.coupling import AdditiveCoupling, AffineCoupling, CouplingLayer
from kerasflows.layers.nets import MADE, MLP

__all__ = [
    "FlowLayer", "CouplingLayer", "AffineCoupling", "AdditiveCoupling", "MLP", "MADE",
]
