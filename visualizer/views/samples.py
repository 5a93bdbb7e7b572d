"""Samples view: a scatter of flow samples, resampled on demand or continuously;
for image-shaped flows (digits), the samples as a grid of pictures."""

import numpy as np
from PySide6 import QtCore, QtWidgets

from visualizer import geometry
from visualizer.items import HeatmapItem, PointCloudItem
from visualizer.views.base import (View, axis_name, draw_picture, labeled, make_plot,
                                   show_pictures)

__all__ = ["SamplesView", "MIN_SAMPLES", "MAX_SAMPLES", "IMAGE_GRID"]

MIN_SAMPLES, MAX_SAMPLES = 100, 100_000
DEFAULT_COUNT = 10_000
#: Samples drawn as pictures in "As images" mode (a 10 x 10 grid).
IMAGE_GRID = 100


class SamplesView(View):
    """Draws `count` samples at a temperature; overlays the training data if known.

    "As images" (for flows whose points are pictures: the model folder's
    manifest `image`, or D a square of 16 or more) draws the first
    `IMAGE_GRID` samples as a grid of grey images instead, black to white
    over the manifest's `levels` (else the data's 0.5-99.5% range).

    Continuous mode asks for the next batch (next seed) as soon as one
    arrives, before drawing it, so the flow computes the next frame while
    this one is drawn.
    """

    name, title = "samples", "Samples"
    kinds = ("samples",)

    def __init__(self, host):
        super().__init__(host)
        self.seed = 0
        self.count = QtWidgets.QSpinBox()
        self.count.setRange(MIN_SAMPLES, MAX_SAMPLES)
        self.count.setSingleStep(1000)
        self.count.setValue(DEFAULT_COUNT)
        self.count.setGroupSeparatorShown(True)
        self.temperature = QtWidgets.QDoubleSpinBox()
        self.temperature.setRange(0.05, 3.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setValue(1.0)
        self.continuous = QtWidgets.QCheckBox("Continuous")
        self.show_data = QtWidgets.QCheckBox("Training data")
        self.as_images = QtWidgets.QCheckBox("As images")
        self.as_images.setVisible(False)        # shown for image-shaped flows
        self.resample_button = QtWidgets.QPushButton("Resample  (R)")
        self.seed_label = QtWidgets.QLabel("")
        # (elided by the window's width rather than widening it: the text is long in
        # image mode)
        self.seed_label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored,
                                      QtWidgets.QSizePolicy.Policy.Preferred)
        self.seed_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight
                                     | QtCore.Qt.AlignmentFlag.AlignVCenter)
        for w in (labeled("Samples", self.count), labeled("Temperature", self.temperature),
                  self.continuous, self.resample_button, self.show_data, self.as_images):
            self.controls.addWidget(w)
        self.controls.addWidget(self.seed_label, 1)
        self.plot = make_plot()
        self.data_item = PointCloudItem("data", size=2.5, alpha=110)
        self.cloud = PointCloudItem("samples", size=2.5, alpha=190)
        self.image_item = HeatmapItem()
        self.image_item.hide()
        self.plot.addItem(self.data_item)
        self.plot.addItem(self.cloud)
        self.plot.addItem(self.image_item)
        self.layout().addWidget(self.plot, 1)
        self.points = None
        self.count.valueChanged.connect(lambda _: self.invalidate())
        self.temperature.valueChanged.connect(lambda _: self.invalidate())
        self.continuous.toggled.connect(lambda on: on and self.resample())
        self.resample_button.clicked.connect(self.resample)
        self.show_data.toggled.connect(self._show_data)
        self.as_images.toggled.connect(lambda _: self._apply_mode())
        self.plot.scene().sigMouseClicked.connect(self._clicked)
        self.as_images.toggled.connect(lambda _: self.mode_changed.emit())

    def model_changed(self):
        self.points = None
        self.show_data.setChecked(self.info["reference_is_data"])
        image = self.info["image"]
        self.as_images.blockSignals(True)
        self.as_images.setChecked(bool(image and image["declared"]))
        self.as_images.blockSignals(False)
        self._apply_mode()

    def model_reloaded(self):
        if self.info["image"] is None:
            self.as_images.setChecked(False)
        self._apply_mode(keep_range=True)

    def images_shown(self):
        """True when the samples are drawn as pictures."""
        return bool(self.info and self.info["image"] and self.as_images.isChecked())

    def _apply_mode(self, keep_range=False):
        """Scatter or pictures: shows the items, axes and controls of the mode."""
        on = self.images_shown()
        self.as_images.setVisible(self.info["image"] is not None)
        self.show_data.setEnabled(self.info["reference_is_data"])
        show_pictures(self.plot, self.image_item, (self.cloud, self.data_item), on)
        if not on:
            self.plot.getPlotItem().setTitle(None)
        if on:
            self._draw_images()
        elif not keep_range:
            self.projection_changed()
        else:
            self._show_data(self.show_data.isChecked())

    def _draw_images(self):
        """The samples' grid of pictures; with "Training data", the data sample's
        beside it (right), for comparison."""
        if self.points is None:
            return
        spec = self.info["image"]
        shown = self.points[:IMAGE_GRID]
        columns = int(np.ceil(np.sqrt(len(shown))))
        picture = geometry.tile_images(shown, spec["shape"], columns)
        if self.show_data.isChecked() and self.info["reference_is_data"]:
            data = geometry.tile_images(self.info["reference"][:IMAGE_GRID], spec["shape"],
                                        columns)
            picture = geometry.side_by_side(picture, data, gap=spec["shape"][1])
            title = "flow samples (left; click one to inspect it) · training data (right)"
        else:
            title = "flow samples (click one to inspect it)"
        self.plot.getPlotItem().setTitle(f"<span style='font-size:10pt'>{title}</span>")
        w, h = draw_picture(self.image_item, picture, spec["levels"])
        self.plot.getPlotItem().getViewBox().setRange(xRange=(0, w), yRange=(0, h),
                                                      padding=0.02)

    def sample_at(self, x, y):
        """The index of the drawn sample picture at `(x, y)` (plot units), or None."""
        if not self.images_shown() or self.points is None:
            return None
        n = len(self.points[:IMAGE_GRID])
        return geometry.tile_index(x, y, n, self.info["image"]["shape"],
                                   int(np.ceil(np.sqrt(n))))

    def _clicked(self, event):
        if event.button() != QtCore.Qt.MouseButton.LeftButton:
            return
        pos = self.plot.getPlotItem().getViewBox().mapSceneToView(event.scenePos())
        k = self.sample_at(pos.x(), pos.y())
        if k is not None:
            self.host.inspect_point(self.points[k])

    def projection_changed(self):
        if self.images_shown():
            return
        dims = self.projection.dims
        item = self.plot.getPlotItem()
        item.setLabel("bottom", axis_name(dims[0]))
        item.setLabel("left", axis_name(dims[1]))
        reference = self.projection.project(self.info["reference"])
        x0, x1, y0, y1 = geometry.robust_region(reference)
        item.getViewBox().setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0)
        self._show_data(self.show_data.isChecked())
        if self.points is not None:
            self.cloud.set_points(self.projection.project(self.points))

    def _show_data(self, on):
        if self.images_shown():
            self._draw_images()
            return
        if on and self.info is not None and self.info["reference_is_data"]:
            self.data_item.set_points(self.projection.project(self.info["reference"]))
        else:
            self.data_item.set_points(np.zeros((0, 2)))

    def export_data(self):
        """The samples drawn (`[n, D]`, every coordinate), their seed and temperature."""
        if self.points is None:
            return None
        return {"samples": self.points, "seed": self.drawn["seed"],
                "temperature": self.drawn["temperature"]}

    def resample(self):
        self.seed += 1
        self.invalidate()

    def refresh(self):
        self.submit("samples", "samples", self.count.value(), self.seed,
                    self.temperature.value())

    def on_result(self, result):
        value = result.value
        if self.continuous.isChecked() and self.active:
            self.resample()                   # computed while this batch is drawn
        self.points, self.drawn = value["points"], value
        shown = f"{len(self.points):,} samples"
        if self.images_shown():
            self._draw_images()
            h, w = self.info["image"]["shape"]
            shown = f"the first {min(len(self.points), IMAGE_GRID)} of {shown}, {h}×{w} pixels"
        else:
            self.cloud.set_points(self.projection.project(self.points))
        text = f"seed {value['seed']} · T = {value['temperature']:.2f} · {shown}"
        self.seed_label.setText(text)
        self.seed_label.setToolTip(text)
        self.drew()
