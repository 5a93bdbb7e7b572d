"""The five views: samples, density, per-layer warping, point inspector, pairs of
coordinates (marginals)."""

from visualizer import geometry
from visualizer.views import density as density_view
from visualizer.views import inspector as inspector_view
from visualizer.views import layers as layers_view
from visualizer.views import samples as samples_view
from visualizer.views.density import DensityView
from visualizer.views.inspector import InspectorView
from visualizer.views.layers import LayersView
from visualizer.views.pairs import PairsView
from visualizer.views.samples import SamplesView
from visualizer.worker import keep_warm_call

VIEWS = {"samples": SamplesView, "density": DensityView, "layers": LayersView,
         "inspector": InspectorView, "pairs": PairsView}

__all__ = ["VIEWS", "SamplesView", "DensityView", "LayersView", "InspectorView", "PairsView",
           "warm_up_plan"]


def warm_up_plan(info):
    """The `(method, rows)` calls that compile the shapes the views ask for first.

    Coarse and default heatmaps and the inspector's backdrop use `log_prob`,
    the samples view `forward`, the layers view `trace` (and the inverse
    direction and the inspector `trace_inverse`), and the compute thread's
    keep-warm evaluations (`worker.keep_warm_call`). The backend pads and
    chunks these rows exactly as it does the views' own requests.
    """
    layer_rows = layers_view.CLOUD_POINTS + len(geometry.grid_lines((0, 1, 0, 1))[0])
    plan = [("forward", samples_view.DEFAULT_COUNT), ("trace", layer_rows)]
    if info["invertible"]:
        plan = ([("log_prob", density_view.COARSE_RESOLUTION ** 2),
                 ("log_prob", density_view.DEFAULT_RESOLUTION ** 2)] + plan
                + [("log_prob", inspector_view.BACKDROP_RESOLUTION ** 2),
                   ("trace_inverse", layer_rows), ("trace_inverse", 1)])
    plan.append(keep_warm_call(info["invertible"]))
    return plan if info["has_trace"] else [p for p in plan if not p[0].startswith("trace")]
