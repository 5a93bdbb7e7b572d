"""Density view: a heatmap of log p(x) (or p(x)) over the region in view.

What is drawn comes from `compute`: the flow's exact `log_prob` on the pixel
grid (a coarse pass first when the exact one is slow, then the exact one at
the chosen resolution; the grid sits on the lattice of its pixel size, so a
pan reuses the pixels the old and new grids share);
for a flow without an inverse, the exact log p of its own samples averaged
per pixel; and, when the model's manifest (or the file's record) names a
target density, that
target (normalised), alone or beside the flow with the same colour scale.
"""

import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from visualizer import geometry, theme
from visualizer.items import PointCloudItem
from visualizer.views.base import View, labeled, show_region, tick_label_width
from visualizer.views.density_panel import HeatmapPanel, bar_label, heatmap_title

__all__ = ["DensityView", "RESOLUTIONS", "DEFAULT_RESOLUTION", "COARSE_RESOLUTION"]

RESOLUTIONS = (64, 128, 256, 512)
DEFAULT_RESOLUTION = 256
COARSE_RESOLUTION = 64      # drawn first while the exact heatmap is computed
SETTLE_MS = 150             # while the view keeps moving, only previews are computed
PREVIEW_UNDER_S = 0.1       # a single change skips the preview when the exact pass is this fast


def _same_region(a, b, tolerance=1e-4):
    """True when regions `a` and `b` differ by less than `tolerance` of their size."""
    if a is None or b is None:
        return False
    scale = max(a[1] - a[0], a[3] - a[2])
    return max(abs(u - v) for u, v in zip(a, b)) <= tolerance * scale


# the colour bar's box, and the width of its axis in it (pyqtgraph's ColorBarItem's)
BAR_BOX_WIDTH, BAR_AXIS_WIDTH = 96, 45


def short_tick_strings(values, scale, spacing):
    """Tick labels as pyqtgraph writes them (fixed point, as many places as the
    spacing needs) up to 4 places; in scientific notation below (a density of
    3e-12, not 0.000000000003), each with the digits the spacing needs at the
    largest tick (5.0e-05, 1.0e-04, 1.5e-04)."""
    step = abs(spacing * scale)
    if not step > 0:
        return [f"{v * scale:g}" for v in values]
    places = max(0, math.ceil(-math.log10(step)))
    if places <= 4:
        return [f"{v * scale:.{places}f}" for v in values]
    largest = max((abs(v * scale) for v in values), default=0.0)
    if not largest > 0:
        return ["0" for _ in values]
    digits = max(0, math.floor(math.log10(largest)) - math.floor(math.log10(step)))
    return [f"{v * scale:.{digits}e}" if v else "0" for v in values]


class DensityView(View):
    """Heatmap(s) with one colour bar; recomputed whenever the view is panned or zoomed.

    `Show` picks the flow's log p(x), the manifest's target density, or both
    side by side (linked axes, one colour scale). `image`/`region` hold the
    left heatmap's log-density and `right.image` the target's.
    """

    name, title = "density", "Density"
    kinds = ("density", "density_coarse", "density_right")

    def __init__(self, host):
        super().__init__(host)
        self.source = QtWidgets.QComboBox()
        # its entries change with the model ("flow | target u3 side by side"): grow to fit
        self.source.setSizeAdjustPolicy(
            QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.resolution = QtWidgets.QComboBox()
        for r in RESOLUTIONS:
            self.resolution.addItem(f"{r} × {r}", r)
        self.resolution.setCurrentIndex(RESOLUTIONS.index(DEFAULT_RESOLUTION))
        self.scale = QtWidgets.QComboBox()
        self.scale.addItems(["log p(x)", "p(x)"])
        self.cmap = QtWidgets.QComboBox()
        self.cmap.addItems(theme.COLORMAPS)
        self.contours = QtWidgets.QCheckBox("Contours")
        self.show_data = QtWidgets.QCheckBox("Training data")
        for w in (labeled("Show", self.source), labeled("Resolution", self.resolution),
                  labeled("Scale", self.scale), labeled("Colours", self.cmap),
                  self.contours, self.show_data):
            self.controls.addWidget(w)
        self.controls.addStretch(1)
        self.left, self.right = HeatmapPanel(), HeatmapPanel()
        self.plot = self.left.plot
        self.image_item, self.contour_item = self.left.image_item, self.left.contour_item
        # The right plot follows the left one's range exactly (no aspect lock of its own);
        # equal axis widths give both plots the same shape, so pixels stay square.
        self.right.plot.getPlotItem().setAspectLocked(False)
        self.right.plot.setXLink(self.plot)
        self.right.plot.setYLink(self.plot)
        self.right.plot.getPlotItem().getAxis("left").setStyle(showValues=False)
        for panel in (self.left, self.right):
            panel.plot.getPlotItem().getAxis("left").setWidth(48)
        self.data_item = PointCloudItem("data", size=2.0, alpha=130)
        self.plot.addItem(self.data_item)
        self.bar = pg.ColorBarItem(colorMap=pg.colormap.get("viridis"), interactive=False,
                                   width=18)
        # p(x)'s ticks as numbers, not scaled by an SI prefix the label reads "(x0.001)"
        self.bar.axis.enableAutoSIPrefix(False)
        self.bar.axis.tickStrings = short_tick_strings
        self.bar.setImageItem([self.left.image_item, self.right.image_item])
        self.bar_box = pg.GraphicsLayoutWidget()
        self.bar_box.addItem(self.bar)
        self.bar_box.setFixedWidth(BAR_BOX_WIDTH)
        row = QtWidgets.QHBoxLayout()
        for w in (self.left.plot, self.right.plot):
            row.addWidget(w, 1)
        row.addWidget(self.bar_box)
        self.layout().addLayout(row, 1)
        self.right.plot.hide()
        self.requested = None
        self._placing = False       # `projection_changed` is placing a new region
        self._left_id = 0           # request id of the left heatmap drawn last
        self._moved = QtCore.QElapsedTimer()
        self._exact_args = None
        self._exact_seconds = None  # compute time of the last exact heatmap
        self._exact_timer = QtCore.QTimer(self)
        self._exact_timer.setSingleShot(True)
        self._exact_timer.setInterval(SETTLE_MS)
        self._exact_timer.timeout.connect(self._submit_exact)
        self.view_box = self.plot.getPlotItem().getViewBox()
        self.view_box.sigRangeChanged.connect(self._range_changed)
        self.resolution.currentIndexChanged.connect(lambda _: self.invalidate())
        self.source.currentIndexChanged.connect(lambda _: self._source_changed())
        self.scale.currentIndexChanged.connect(lambda _: self._draw())
        self.cmap.currentTextChanged.connect(
            lambda name: self.bar.setColorMap(pg.colormap.get(name)))
        self.contours.toggled.connect(lambda _: self._draw())
        self.show_data.toggled.connect(lambda _: self._draw_data())

    @property
    def image(self):
        return self.left.image

    @property
    def region(self):
        return self.left.region

    # -- model and settings -------------------------------------------------------
    def _sources(self):
        """What `Show` offers for the current model: `[(label, key)]`."""
        info = self.info
        if info["invertible"]:
            out = [("flow", "flow")]
        elif info["event_dim"] == 2:
            out = [("flow (from its samples)", "flow_samples")]
        else:
            out = [("flow (needs the inverse)", "flow_unavailable")]
        if info["target"]:
            out += [(f"target: {info['target']}", "target"),
                    (f"flow | target {info['target']} side by side", "both")]
        return out

    def model_changed(self):
        self._exact_timer.stop()
        self._exact_seconds = None
        self.left.clear()
        self.right.clear()
        self._left_id = 0
        self.source.blockSignals(True)
        self.source.clear()
        for label, key in self._sources():
            self.source.addItem(label, key)
        if self.info["target"]:
            self.source.setCurrentIndex(2)
        self.source.blockSignals(False)
        self.right.plot.setVisible(self.source.currentData() == "both")
        self.show_data.setEnabled(self.info["reference_is_data"])
        self.show_data.setChecked(False)
        self.projection_changed()

    def model_reloaded(self):
        offered = [self.source.itemData(i) for i in range(self.source.count())]
        if offered != [key for _, key in self._sources()]:
            self.model_changed()
            return
        self._exact_timer.stop()
        self._exact_seconds = None      # the new weights' functions compile: preview first
        self.show_data.setEnabled(self.info["reference_is_data"])
        if not self.info["reference_is_data"]:
            self.show_data.setChecked(False)
        self._draw_data()

    def _source_changed(self):
        self._exact_timer.stop()
        self.left.clear()
        self.right.clear()
        self.right.plot.setVisible(self.source.currentData() == "both")
        self.invalidate()

    def projection_changed(self):
        dims = self.projection.dims
        for panel in (self.left, self.right):
            panel.plot.getPlotItem().setLabel("bottom", self.axis_name(dims[0]))
        self.plot.getPlotItem().setLabel("left", self.axis_name(dims[1]))
        region = geometry.robust_region(self.projection.project(self.info["reference"]))
        # The view box's signals stay on: the axes' ticks and the right plot's range
        # follow them. The heatmap is asked for by whoever changed the model or the
        # projection (`set_model`, `set_projection`), once.
        self._placing = True
        try:
            show_region(self.plot.getPlotItem(), region)
        finally:
            self._placing = False
        self._fit_axes()
        self._draw_data()

    def visible_region(self):
        (x0, x1), (y0, y1) = self.view_box.viewRange()
        return (x0, x1, y0, y1)

    def _fit_axes(self):
        """Both panels' value axes as wide as their labels need (the same width, so
        the two heatmaps stay one size)."""
        (y0, y1) = self.view_box.viewRange()[1]
        width = tick_label_width(self.plot.getPlotItem().getAxis("left"), y0, y1)
        for panel in (self.left, self.right):
            axis = panel.plot.getPlotItem().getAxis("left")
            if axis.fixedWidth != width:        # the width asked for, not yet the one laid out
                axis.setWidth(width)

    def _range_changed(self, *args):
        """The user panned or zoomed (or the window resized): a heatmap of the region now
        in view; not while `projection_changed` places a new model's region."""
        self._fit_axes()
        if self._placing:
            return
        if self.info is not None and not _same_region(self.visible_region(), self.requested):
            self.invalidate()

    # -- requests and results --------------------------------------------------------
    def refresh(self):
        res, region = self.resolution.currentData(), self.visible_region()
        self.requested = region
        source, target = self.source.currentData(), self.info["target"]
        if source == "flow_unavailable":
            self.show_message("This flow has no inverse, so log p(x) cannot be evaluated on a "
                              "grid (and a density from samples is drawn for 2-D flows only). "
                              "The Samples and Layers views work.")
            self.drew()
            return
        if source in ("flow", "both") and self.info["invertible"]:
            self._request_flow(region, res)
        elif source in ("flow_samples", "both"):
            self.submit("density", "sampled_density", region, res)
        if source == "target":
            self.submit("density", "target_density", target, region, res)
        if source == "both":
            self.submit("density_right", "target_density", target, region, res)

    def _request_flow(self, region, res):
        """A coarse preview now (unless the exact pass is quick and the view is still);
        the exact heatmap now, or once the view stops moving."""
        self._exact_args = (region, res, self.projection)
        moving = self._moved.isValid() and self._moved.elapsed() < SETTLE_MS
        self._moved.start()
        quick = self._exact_seconds is not None and self._exact_seconds < PREVIEW_UNDER_S
        if res > COARSE_RESOLUTION and (moving or not quick):
            self.submit("density_coarse", "density", region, COARSE_RESOLUTION, self.projection)
        if moving:                      # a drag: previews keep up, the exact one waits
            self._waiting.add("density")
            self._latest["density"] = None
            self._exact_timer.start()
        else:
            self._exact_timer.stop()
            self._submit_exact()

    def _submit_exact(self):
        self.submit("density", "density", *self._exact_args)

    def on_result(self, result):
        if result.kind == "density" and result.value.get("resolution", 0) > COARSE_RESOLUTION:
            self._exact_seconds = result.seconds
        if result.kind == "density_right":
            self.right.set_value(result.value)
        elif result.request_id > self._left_id:        # a late coarse pass never covers a fine one
            self._left_id = result.request_id
            self.left.set_value(result.value)
            self.keep_drawn(projection=True)
        else:
            return
        self._draw()

    # -- drawing -------------------------------------------------------------------------
    def _panels(self):
        both = self.source.currentData() == "both"
        return [p for p in ((self.left, self.right) if both else (self.left,))
                if p.image is not None]

    def _draw(self):
        panels = self._panels()
        if not panels:
            return
        log_scale = self.scale.currentIndex() == 0
        shown = np.concatenate([p.shown(log_scale).ravel() for p in panels])
        levels = geometry.color_levels(shown, log_scale)
        for p in panels:
            p.draw(log_scale, levels, self.contours.isChecked())
        self.bar.setLevels(levels)
        self._fit_bar_labels(levels)
        self.bar_box.setVisible(any(p.drawable(log_scale) for p in panels))
        label = bar_label([p.value for p in panels], log_scale)
        if self.bar.axis.labelText != label:
            self.bar.axis.setLabel(label)
        self._label(log_scale)
        self.say_finding(self._not_finite_text(panels, log_scale))
        self.drew()

    def _fit_bar_labels(self, levels):
        """Widens the colour bar's axis to its widest tick label: pyqtgraph leaves out a
        label wider than the axis (45 px), so a p(x) bar of 2.0e-08 .. 1.0e-07 read
        only "0", and one of 0.0002 .. 0.0010 no number at all."""
        width = tick_label_width(self.bar.axis, *levels, minimum=BAR_AXIS_WIDTH)
        # against the width last asked for: the laid-out one follows an event-loop turn
        # later, and two fits in one turn (wider, then back) kept the wider one
        if width != self.bar.axis.fixedWidth:
            self.bar.axis.setWidth(width)
            self.bar_box.setFixedWidth(BAR_BOX_WIDTH + width - BAR_AXIS_WIDTH)

    def _not_finite_text(self, panels, log_scale=True):
        """What cannot be drawn: the heatmaps with no finite pixel (a flow's own
        samples' has its note: none fell in view), or whose p(x) is 0 (below
        float64's smallest) at every pixel, or ""."""
        said = []
        for p in panels:
            if p.any_finite() and not p.drawable(log_scale):
                said.append(f"p(x) is below 5e-324, 0 in float64, everywhere in view (the "
                            f"largest log p(x) here is {p.largest_log_density():.1f}): pick "
                            "log p(x) as the scale, or pan or zoom back to the data.")
                continue
            if p.any_finite() or "samples" in p.value:
                continue
            if "target" in p.value:
                said.append(f"The target {p.value['target']}'s density is not finite (NaN or "
                            f"−inf) anywhere in view.")
                continue
            context = (", or the Context panel's context is one the flow does not take (a "
                       "class label it does not know gives NaN)"
                       if self.info["context_dim"] else "")
            said.append("log p(x) is not finite (NaN or −inf) anywhere in view, so no heatmap "
                        "is drawn: the region lies outside the flow's domain (a bounded data "
                        f"end, such as Sigmoid's (0, 1)){context}. Pan or zoom back to the "
                        "data.")
        return " ".join(said)

    def _label(self, log_scale):
        """Titles (the quantity on the scale shown) and the note on what is drawn."""
        for panel in (self.left, self.right):
            panel.set_title(heatmap_title(panel.value or {}, log_scale,
                                          (self.info or {}).get("context_names")))
        value = self.left.value or {}
        if "samples" in value:
            self.show_note(
                f"This flow has no inverse, so log p(x) cannot be evaluated on a grid. Shown: "
                f"the exact log p(x) of its own samples (sample_and_log_prob), averaged per "
                f"pixel; {value['samples_in_view']:,} of {value['samples']:,} samples fall in "
                f"view, and pixels without a sample are left at the bottom of the scale.")
        else:
            self.show_note("")

    def export_data(self):
        """The heatmap(s) drawn: `x [n]` and `y [n]` pixel centres, `region`, and
        `log_prob [n, n]` (row i at `y[i]`, column j at `x[j]`) for the flow, or
        `log_prob_from_samples` (a flow without inverse), and `target_log_density`
        (normalised) when a target is shown."""
        panels = self._panels()
        if not panels:
            return None
        value = panels[0].value
        x0, x1, y0, y1 = value["region"]
        n = value["resolution"]
        out = {"x": geometry.pixel_centers(x0, x1, n), "y": geometry.pixel_centers(y0, y1, n),
               "region": np.asarray(value["region"], np.float64)}
        for panel in panels:
            v = panel.value
            key = ("target_log_density" if "target" in v else
                   "log_prob_from_samples" if "samples" in v else "log_prob")
            out[key] = panel.image
        return out

    def _draw_data(self):
        on = self.show_data.isChecked() and self.info is not None
        pts = self.projection.project(self.info["reference"]) if on else np.zeros((0, 2))
        self.data_item.set_points(pts)
