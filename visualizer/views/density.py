"""Density view: a heatmap of log p(x) (or p(x)) over the region in view."""

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from visualizer import geometry, theme
from visualizer.items import GridCurve, PointCloudItem
from visualizer.views.base import View, axis_name, labeled, make_plot

__all__ = ["DensityView", "RESOLUTIONS", "contour_lines"]

RESOLUTIONS = (64, 128, 256, 512)
CONTOUR_LEVELS = 8


def contour_lines(image, region, levels):
    """Iso-lines of `image` (row-major, y up, over `region`) as `(xy, connect)`."""
    x0, x1, y0, y1 = region
    rows, cols = image.shape
    clean = np.where(np.isfinite(image), image, np.nanmin(image[np.isfinite(image)]))
    xs, ys, connect = [], [], []
    for level in levels:
        # pyqtgraph's isocurve takes data indexed [x, y]; paths come back in index units.
        for path in pg.functions.isocurve(clean.T, level, connected=True, extendToEdge=True):
            p = np.asarray(path, np.float64)
            if len(p) < 2:
                continue
            xs.append(x0 + (p[:, 0] + 0.5) * (x1 - x0) / cols)
            ys.append(y0 + (p[:, 1] + 0.5) * (y1 - y0) / rows)
            c = np.ones(len(p), bool)
            c[-1] = False
            connect.append(c)
    if not xs:
        return np.zeros((0, 2)), np.zeros(0, bool)
    return np.stack([np.concatenate(xs), np.concatenate(ys)], 1), np.concatenate(connect)


def _same_region(a, b, tolerance=1e-4):
    """True when regions `a` and `b` differ by less than `tolerance` of their size."""
    if a is None or b is None:
        return False
    scale = max(a[1] - a[0], a[3] - a[2])
    return max(abs(u - v) for u, v in zip(a, b)) <= tolerance * scale


class DensityView(View):
    """Heatmap with colour bar; recomputed whenever the view is panned or zoomed.

    Shows the flow's log p(x) (or p(x)); for a model whose manifest names a
    target density, that target can be shown instead (when
    `kerasflows.targets` is importable).
    """

    name, title = "density", "Density"
    kinds = ("density",)

    def __init__(self, host):
        super().__init__(host)
        self.source = QtWidgets.QComboBox()
        self.resolution = QtWidgets.QComboBox()
        for r in RESOLUTIONS:
            self.resolution.addItem(f"{r} × {r}", r)
        self.resolution.setCurrentIndex(RESOLUTIONS.index(256))
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
        self.plot = make_plot()
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image_item)
        self.contour_item = GridCurve("contour", 1.0, 120)
        self.data_item = PointCloudItem("data", size=2.0, alpha=130)
        self.plot.addItem(self.contour_item)
        self.plot.addItem(self.data_item)
        self.bar = pg.ColorBarItem(colorMap=pg.colormap.get("viridis"), interactive=False,
                                   width=18)
        self.bar.setImageItem(self.image_item, insert_in=self.plot.getPlotItem())
        self.bar.axis.setWidth(56)      # fixed: tick labels must not resize the plot (and its range)
        self.layout().addWidget(self.plot, 1)
        self.image = None          # the log-density last drawn ([res, res], row-major, y up)
        self.region = self.requested = None
        self.view_box = self.plot.getPlotItem().getViewBox()
        self.view_box.sigRangeChanged.connect(self._range_changed)
        for box in (self.resolution, self.source):
            box.currentIndexChanged.connect(lambda _: self.invalidate())
        self.scale.currentIndexChanged.connect(lambda _: self._draw())
        self.cmap.currentTextChanged.connect(
            lambda name: self.bar.setColorMap(pg.colormap.get(name)))
        self.contours.toggled.connect(lambda _: self._draw())
        self.show_data.toggled.connect(lambda _: self._draw_data())

    def model_changed(self):
        self.image = None
        self.source.blockSignals(True)
        self.source.clear()
        self.source.addItem("flow", "flow")
        if self.info["target"]:
            self.source.addItem(f"target: {self.info['target']}", "target")
        self.source.blockSignals(False)
        self.show_data.setEnabled(self.info["reference_is_data"])
        self.show_data.setChecked(False)
        self.projection_changed()

    def projection_changed(self):
        dims = self.projection.dims
        self.plot.getPlotItem().setLabel("bottom", axis_name(dims[0]))
        self.plot.getPlotItem().setLabel("left", axis_name(dims[1]))
        x0, x1, y0, y1 = geometry.robust_region(self.projection.project(self.info["reference"]))
        self.view_box.blockSignals(True)
        self.view_box.setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0)
        self.view_box.blockSignals(False)
        self._draw_data()

    def visible_region(self):
        (x0, x1), (y0, y1) = self.view_box.viewRange()
        return (x0, x1, y0, y1)

    def _range_changed(self, *args):
        if self.info is not None and not _same_region(self.visible_region(), self.requested):
            self.invalidate()

    def refresh(self):
        res = self.resolution.currentData()
        self.requested = self.visible_region()
        if self.source.currentData() == "target":
            self.submit("density", "target_density", self.info["target"],
                        self.visible_region(), res)
        else:
            self.submit("density", "density", self.visible_region(), res, self.projection)

    def on_result(self, result):
        self.image = result.value["image"]
        self.region = result.value["region"]
        self._draw()

    def _draw(self):
        if self.image is None:
            return
        log_scale = self.scale.currentIndex() == 0
        shown = self.image if log_scale else np.exp(self.image)
        lo, hi = geometry.color_levels(shown, log_scale)
        shown = np.nan_to_num(shown, nan=lo, neginf=lo, posinf=hi).astype(np.float32)
        self.image_item.setImage(shown, autoLevels=False)
        x0, x1, y0, y1 = self.region
        self.image_item.setRect(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))
        label = "log p(x)" if log_scale else "p(x)"
        if self.source.currentData() == "target":
            label = f"target {label.replace('p(x)', 'density')}"
        self.bar.setLevels((lo, hi))
        self.bar.axis.setLabel(label)
        if self.contours.isChecked():
            levels = np.linspace(lo, hi, CONTOUR_LEVELS + 2)[1:-1]
            self.contour_item.set_lines(*contour_lines(shown, self.region, levels))
        else:
            self.contour_item.set_lines(np.zeros((0, 2)), np.zeros(0, bool))
        self.drew()

    def _draw_data(self):
        on = self.show_data.isChecked() and self.info is not None
        pts = self.projection.project(self.info["reference"]) if on else np.zeros((0, 2))
        self.data_item.set_points(pts)
