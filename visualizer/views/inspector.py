"""Inspector view: click a point to see how the flow treats it, layer by layer.

For a flow whose manifest declares its points pictures (`image`), the plot
shows the inspected point and its base image z as pictures instead of a 2-D
slice (points come from the Samples view: click a sample's picture there).
"""

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from visualizer import geometry, permutations, theme
from visualizer.items import HeatmapItem, PointCloudItem
from visualizer.views.base import View, draw_picture, make_plot, show_pictures, show_region

__all__ = ["InspectorView", "format_vector"]

BACKDROP_RESOLUTION = 128
#: The base values drawn black and white in the z picture.
Z_LEVELS = (-3.0, 3.0)


def format_vector(v, limit=6):
    v = np.asarray(v, np.float64)
    parts = [f"{a:+.4f}" for a in v[:limit]]
    if len(v) > limit:
        parts.append(f"… ({len(v)} dims)")
    return "(" + ", ".join(parts) + ")"


def _x_label(names, limit=6):
    """The table's label for x: "x", or "x = (height, weight)" for named columns
    (the first `limit`, as `format_vector` shows them)."""
    if not names:
        return "x"
    more = ", …" if len(names) > limit else ""
    return f"x = ({', '.join(names[:limit])}{more})"


def _mono_font():
    return QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)


def _base_label(df):
    """The inspector's name of the base density: "log p0(z)", and for a Student-t
    base its degrees of freedom (their range from five coordinates on)."""
    if df is None:
        return "log p0(z)"
    df = np.asarray(df, float)
    text = (", ".join(f"{v:.3g}" for v in df) if len(df) <= 4
            else f"{df.min():.3g} to {df.max():.3g}")
    return f"log p0(z), Student-t base (df {text})"


class InspectorView(View):
    """A log-density backdrop to click on, and a table of the clicked point's numbers.

    The table lists x, z = inverse(x), log p0(z), each step's inverse
    log|det J| (data to base), their sum and log p(x); the point's path
    through the layers is drawn on the plot.
    """

    name, title = "inspector", "Inspector"
    kinds = ("inspector_backdrop", "inspect")

    def __init__(self, host):
        super().__init__(host)
        self.hint = QtWidgets.QLabel("Click anywhere on the plot to inspect that point.")
        self.controls.addWidget(self.hint)
        self.controls.addStretch(1)
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        self.plot = make_plot()
        self.backdrop = HeatmapItem()
        self.backdrop.setOpacity(0.85)
        self.plot.addItem(self.backdrop)
        self.data_item = PointCloudItem("data", size=2.5, alpha=170)
        self.plot.addItem(self.data_item)
        self.path_item = pg.PlotDataItem(pen=theme.pen("path", 1.5), symbol="o", symbolSize=5,
                                         symbolBrush=theme.color("path"), symbolPen=None)
        self.marker = pg.ScatterPlotItem(size=12, brush=theme.color("marker"),
                                         pen=pg.mkPen("w", width=1.5))
        self.plot.addItem(self.path_item)
        self.plot.addItem(self.marker)
        self.picture_item = HeatmapItem()
        self.picture_item.hide()
        self.plot.addItem(self.picture_item)
        self.table = QtWidgets.QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["quantity", "value"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        split.addWidget(self.plot)
        split.addWidget(self.table)
        split.setSizes([640, 460])
        self.layout().addWidget(split, 1)
        self.point = None          # the inspected point, [D]
        self.details = None        # the last `compute.inspect` result drawn
        self.plot.scene().sigMouseClicked.connect(self._clicked)

    def images_shown(self):
        """True for a flow whose manifest declares its points pictures."""
        return bool(self.info and self.info["image"] and self.info["image"]["declared"])

    def model_changed(self):
        self.details = None
        self.point = np.asarray(self.info["reference"][0], np.float32)
        self._set_mode()
        self.projection_changed()

    def _set_mode(self):
        on = self.images_shown()
        show_pictures(self.plot, self.picture_item,
                      (self.backdrop, self.data_item, self.path_item, self.marker), on)
        title = (f"x (left) and z = inverse(x) (right, black {Z_LEVELS[0]:g} to white "
                 f"{Z_LEVELS[1]:g})")
        self.plot.getPlotItem().setTitle(
            f"<span style='font-size:10pt'>{title}</span>" if on else None)
        self.hint.setText("Click a sample's picture in the Samples view to inspect it." if on
                          else "Click anywhere on the plot to inspect that point.")

    def _draw_picture(self, d):
        """x and z side by side, z mapped from `Z_LEVELS` onto the picture's levels."""
        spec = self.info["image"]
        lo, hi = spec["levels"]
        z01 = (np.clip(d["z"], *Z_LEVELS) - Z_LEVELS[0]) / (Z_LEVELS[1] - Z_LEVELS[0])
        x_picture = geometry.tile_images(np.asarray(d["x"])[None], spec["shape"])
        z_picture = geometry.tile_images((lo + z01 * (hi - lo))[None], spec["shape"])
        picture = geometry.side_by_side(x_picture, z_picture, gap=max(1, spec["shape"][1] // 2))
        w, h = draw_picture(self.picture_item, picture, (lo, hi))
        self.plot.getPlotItem().getViewBox().setRange(xRange=(0, w), yRange=(0, h),
                                                      padding=0.05)

    def model_reloaded(self):
        self.data_item.set_points(self.projection.project(self.info["reference"]))

    def projection_changed(self):
        if self.images_shown():         # pictures: no 2-D slice to set up
            return
        d = self.projection.dims
        self.plot.getPlotItem().setLabel("bottom", self.axis_name(d[0]))
        self.plot.getPlotItem().setLabel("left", self.axis_name(d[1]))
        self.region = geometry.robust_region(self.projection.project(self.info["reference"]))
        show_region(self.plot.getPlotItem(), self.region)
        self.data_item.set_points(self.projection.project(self.info["reference"]))
        if self.point is not None and not self.images_shown():
            self.point = self.projection.embed(self.projection.project(self.point[None]))[0]

    def refresh(self):
        self.hint.setVisible(self.info["invertible"])
        if not self.info["invertible"]:
            layers = ", ".join(self.info["forward_only_layers"]) or "some layers"
            self.show_message(f"The inspector needs z = inverse(x) and log p(x), but {layers} "
                              "layers have no inverse: this flow can only sample (see the "
                              "Samples, Density and Layers views).")
            self.table.setRowCount(0)
            self.backdrop.clear()
            self.path_item.setData([], [])
            self.marker.setData([])
            self.drew()
            return
        if not self.images_shown():
            self.submit("inspector_backdrop", "density", self.region, BACKDROP_RESOLUTION,
                        self.projection)
        self.inspect(self.point)

    def inspect(self, x):
        """Asks for the numbers of point `x [D]`."""
        self.point = np.asarray(x, np.float32)
        self.marker.setData(pos=self.projection.project(self.point[None]))
        self.submit("inspect", "inspect", self.point)

    def _clicked(self, event):
        if (self.info is None or not self.info["invertible"] or self.images_shown()
                or event.button() != QtCore.Qt.MouseButton.LeftButton):
            return
        pos = self.plot.getPlotItem().getViewBox().mapSceneToView(event.scenePos())
        self.inspect(self.projection.embed(np.array([[pos.x(), pos.y()]]))[0])

    def on_result(self, result):
        if result.kind == "inspector_backdrop":
            image = result.value["image"]
            lo, hi = geometry.color_levels(image)
            self.backdrop.setImage(np.nan_to_num(image, nan=lo, neginf=lo).astype(np.float32),
                                   levels=(lo, hi), lut=pg.colormap.get("viridis").getLookupTable())
            x0, x1, y0, y1 = result.value["region"]
            self.backdrop.setRect(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))
        else:
            self.details = result.value
            self.keep_drawn()
            self._fill_table(self.details)
            if self.images_shown():
                self._draw_picture(self.details)
            self._draw_path()
        self.drew()

    def path_positions(self):
        """`[L+1, 2]`: the columns of each state of the path drawn. Past a step that
        only reorders the coordinates (a `Permute`, D > 2) the path follows the two
        shown to where they moved (`permutations`), not the positions they left."""
        d = self.details
        if d.get("sources") is None:
            return np.tile(np.asarray(self.projection.dims), (len(d["path"]), 1))
        return permutations.followed_positions(d["sources"], self.projection.dims,
                                               from_end=False)

    def _draw_path(self):
        path = None if self.details is None else self.details["path"]
        if path is None:
            self.path_item.setData([], [])
            return
        xy = np.asarray(path)[np.arange(len(path))[:, None], self.path_positions()]
        self.path_item.setData(xy)

    def export_data(self):
        """The inspected point's numbers: `x`, `z`, `log_p0`, `log_dets` (per inverse
        step, data to base; absent without trace signatures), `log_det_total`,
        `log_prob`, its `path [L+1, D]` through the layers with `path_positions
        [L+1, 2]` (the columns of each state drawn) and the `layer_names`."""
        if self.details is None:
            return None
        keys = ("x", "z", "log_p0", "log_dets", "log_det_total", "log_prob", "path")
        out = {k: self.details[k] for k in keys if self.details.get(k) is not None}
        if self.details["path"] is not None:
            out["path_positions"] = self.path_positions()
        out["layer_names"] = np.array(self.info["layer_names"])
        return out

    def _rows(self, d):
        names = self.info["layer_names"]
        L = len(names)
        rows = [(_x_label(self.info.get("data_names")), format_vector(d["x"])),
                ("z = inverse(x)", format_vector(d["z"])),
                (_base_label(self.info.get("base_df")), f"{d['log_p0']:+.5f}")]
        if d["log_dets"] is None:
            rows.append(("per-layer log|det J|", "unavailable (no trace signatures)"))
        else:
            for i, ld in enumerate(d["log_dets"]):
                rows.append((f"undo layer {L - 1 - i}: {names[L - 1 - i]}", f"{ld:+.5f}"))
        rows += [("Σ log|det ∂z/∂x|", f"{d['log_det_total']:+.5f}"),
                 ("log p(x) = log p0(z) + Σ", f"{d['log_prob']:+.5f}")]
        return rows

    def _fill_table(self, d):
        rows = self._rows(d)
        self.table.setRowCount(len(rows))
        for i, (name, value) in enumerate(rows):
            for j, text in enumerate((name, value)):
                item = QtWidgets.QTableWidgetItem(text)
                if j == 1:
                    item.setFont(_mono_font())
                self.table.setItem(i, j, item)
        self.table.resizeColumnToContents(0)
