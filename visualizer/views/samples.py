"""Samples view: a scatter of flow samples, resampled on demand or continuously."""

import numpy as np
from PySide6 import QtWidgets

from visualizer import geometry
from visualizer.items import PointCloudItem
from visualizer.views.base import View, axis_name, labeled, make_plot

__all__ = ["SamplesView", "MIN_SAMPLES", "MAX_SAMPLES"]

MIN_SAMPLES, MAX_SAMPLES = 100, 100_000
DEFAULT_COUNT = 10_000


class SamplesView(View):
    """Draws `count` samples at a temperature; overlays the training data if known.

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
        self.resample_button = QtWidgets.QPushButton("Resample  (R)")
        self.seed_label = QtWidgets.QLabel("")
        for w in (labeled("Samples", self.count), labeled("Temperature", self.temperature),
                  self.continuous, self.resample_button, self.show_data):
            self.controls.addWidget(w)
        self.controls.addStretch(1)
        self.controls.addWidget(self.seed_label)
        self.plot = make_plot()
        self.data_item = PointCloudItem("data", size=2.5, alpha=110)
        self.cloud = PointCloudItem("samples", size=2.5, alpha=190)
        self.plot.addItem(self.data_item)
        self.plot.addItem(self.cloud)
        self.layout().addWidget(self.plot, 1)
        self.points = None
        self.count.valueChanged.connect(lambda _: self.invalidate())
        self.temperature.valueChanged.connect(lambda _: self.invalidate())
        self.continuous.toggled.connect(lambda on: on and self.resample())
        self.resample_button.clicked.connect(self.resample)
        self.show_data.toggled.connect(self._show_data)

    def model_changed(self):
        self.points = None
        self.show_data.setEnabled(self.info["reference_is_data"])
        self.show_data.setChecked(self.info["reference_is_data"])
        self.projection_changed()

    def model_reloaded(self):
        self.show_data.setEnabled(self.info["reference_is_data"])
        self._show_data(self.show_data.isChecked())

    def projection_changed(self):
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
        self.cloud.set_points(self.projection.project(self.points))
        self.seed_label.setText(f"seed {value['seed']} · T = {value['temperature']:.2f} · "
                                f"{len(self.points):,} samples")
        self.drew()
