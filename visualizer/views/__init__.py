"""The four views: samples, density, per-layer warping, point inspector."""

from visualizer.views.density import DensityView
from visualizer.views.inspector import InspectorView
from visualizer.views.layers import LayersView
from visualizer.views.samples import SamplesView

VIEWS = {"samples": SamplesView, "density": DensityView, "layers": LayersView,
         "inspector": InspectorView}

__all__ = ["VIEWS", "SamplesView", "DensityView", "LayersView", "InspectorView"]
