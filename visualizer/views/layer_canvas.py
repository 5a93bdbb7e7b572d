"""The plot the Layers view draws its states on: a grid, a sample cloud and a
picture item, drawn at a fractional layer position.

The view draws on one in its window; `visualizer.animation` draws the same
states on one of its own, sized for the animation's frames.
"""

from visualizer import geometry
from visualizer.items import GridCurve, HeatmapItem, PointCloudItem
from visualizer.views.base import draw_picture, make_plot, show_pictures, show_region

__all__ = ["LayerCanvas"]


class LayerCanvas:
    """A `pg.PlotWidget` (`plot`) with the Layers view's items (`grid`, `cloud`,
    `image_item`). `show(states)` sets it up for a set of states, as points or
    pictures; `draw(states, t)` draws them at layer position `t`, blending the two
    states either side (the plot's range too), and names the axes.

    `states` is the `LayersView` that holds them (its `grid_states`,
    `cloud_states`, `connect`, `regions`, `image_states`, `images_shown()`,
    `picture(rows)`, `image_levels()` and `axis_labels(k)`).
    """

    def __init__(self, parent=None):
        self.plot = make_plot(parent)
        self.grid = GridCurve("grid", 1.0, 140)
        self.cloud = PointCloudItem("samples", size=3.0, alpha=200)
        self.image_item = HeatmapItem()
        self.image_item.hide()
        for item in (self.grid, self.cloud, self.image_item):
            self.plot.addItem(item)
        self._range = None         # the plot's range last set (x0, x1, y0, y1)
        self._axis_labels = None   # the axis labels last set [bottom, left]

    def show(self, states):
        """Shows points or pictures, as `states` draws them; forgets the range and
        labels set (the next `draw` sets them)."""
        on = states.images_shown()
        show_pictures(self.plot, self.image_item, (self.grid, self.cloud), on)
        self._range = self._axis_labels = None
        if on:
            h, w = states.picture(states.image_states[0]).shape
            self.plot.getPlotItem().getViewBox().setRange(xRange=(0, w), yRange=(0, h),
                                                          padding=0.02)

    def draw(self, states, t):
        """Draws `states` at the fractional layer position `t`."""
        if states.images_shown():
            draw_picture(self.image_item,
                         states.picture(geometry.lerp_states(states.image_states, t)),
                         states.image_levels())
            return
        self.grid.set_lines(geometry.lerp_states(states.grid_states, t), states.connect)
        self.cloud.set_points(geometry.lerp_states(states.cloud_states, t))
        region = tuple(geometry.lerp_states(states.regions, t))
        if region != self._range:
            self._range = region
            show_region(self.plot.getPlotItem(), region)
        labels = states.axis_labels(int(round(t)))
        if labels != self._axis_labels:
            self._axis_labels = labels
            self.plot.getPlotItem().setLabel("bottom", labels[0])
            self.plot.getPlotItem().setLabel("left", labels[1])
