"""Samples view: a scatter of flow samples, resampled on demand or continuously;
for image-shaped flows (digits), the samples as a grid of pictures."""

import contextlib

import numpy as np
from PySide6 import QtCore, QtWidgets

from visualizer import geometry
from visualizer.items import HeatmapItem, PointCloudItem
from visualizer.views.base import (ElidedLabel, View, draw_picture, labeled,
                                   make_plot, show_pictures, show_region)

__all__ = ["SamplesView", "MIN_SAMPLES", "MAX_SAMPLES", "IMAGE_GRID", "SWEEP_PER",
           "SWEEP_MAX_VALUES", "sample_count_box", "finite_rows", "none_finite_text"]

MIN_SAMPLES, MAX_SAMPLES = 100, 100_000
DEFAULT_COUNT = 10_000
#: Samples drawn as pictures in "As images" mode (a 10 x 10 grid).
IMAGE_GRID = 100
#: "One row per ...": samples per context value, and the most values swept.
SWEEP_PER, SWEEP_MAX_VALUES = 10, 20


def sample_count_box():
    """The *Samples* spin box: `MIN_SAMPLES` to `MAX_SAMPLES` in steps of 1,000,
    starting at `DEFAULT_COUNT` (the Samples and Pairs views)."""
    count = QtWidgets.QSpinBox()
    count.setRange(MIN_SAMPLES, MAX_SAMPLES)
    count.setSingleStep(1000)
    count.setValue(DEFAULT_COUNT)
    count.setGroupSeparatorShown(True)
    return count


def finite_rows(points):
    """A mask `[N]` of the rows of `points [N, D]` finite in every coordinate: the
    samples drawn (a flow gives NaN outside its domain, or at a context it does not
    take)."""
    return np.all(np.isfinite(points), axis=1)


def none_finite_text(n, conditional):
    """The message of a view none of whose `n` samples is finite; `conditional`: the
    flow takes a context."""
    cause = ("the Context panel's context may be one the flow does not take (a class "
             "label it does not know gives NaN), or its weights are not finite"
             if conditional else
             "its forward pass gives NaN or inf (a data end such as Logit met values "
             "outside its domain, an overflow, or weights that are not finite)")
    return f"None of the flow's {n:,} samples is finite (NaN or inf), so none is drawn: {cause}."


class SamplesView(View):
    """Draws `count` samples at a temperature; overlays the training data if known.

    "As images" (for flows whose points are pictures: the model folder's
    manifest `image`, or D a square of 16 or more) draws the first
    `IMAGE_GRID` samples as a grid of grey images instead, black to white
    over the manifest's `levels` (else the data's 0.5-99.5% range).

    For a conditional flow whose context has a coordinate that moves in steps
    (the manifest's `context_step`, e.g. a digit's label), "One row per ..."
    draws `SWEEP_PER` pictures at each of its values (at most
    `SWEEP_MAX_VALUES`), one row per value from the same base noise; clicking
    a picture sets the context to its row's value and inspects it.

    Continuous mode asks for the next batch (next seed) as soon as one
    arrives, before drawing it, so the flow computes the next frame while
    this one is drawn.

    A sample with NaN or inf in any coordinate is not in the scatter: the
    label counts the finite ones when some are not, and a message says so
    when none is.
    """

    name, title = "samples", "Samples"
    kinds = ("samples",)
    holds_values = False        # every sample's two coordinates, whatever the others

    def __init__(self, host):
        super().__init__(host)
        self.seed = 0
        self.count = sample_count_box()
        self.temperature = QtWidgets.QDoubleSpinBox()
        self.temperature.setRange(0.05, 3.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setValue(1.0)
        self.continuous = QtWidgets.QCheckBox("Continuous")
        self.show_data = QtWidgets.QCheckBox("Training data")
        self.as_images = QtWidgets.QCheckBox("As images")
        self.as_images.setVisible(False)        # shown for image-shaped flows
        self.by_context = QtWidgets.QCheckBox("One row per value")
        self.by_context.setVisible(False)       # shown for pictures with a stepped context
        self.resample_button = QtWidgets.QPushButton("Resample  (R)")
        # (elided to the window's width rather than widening it: the text is long in
        # image mode)
        self.seed_label = ElidedLabel("")
        self.seed_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight
                                     | QtCore.Qt.AlignmentFlag.AlignVCenter)
        for w in (labeled("Samples", self.count), labeled("Temperature", self.temperature),
                  self.continuous, self.resample_button, self.show_data, self.as_images,
                  self.by_context):
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
        self.points, self.drawn = None, {}
        self.count.valueChanged.connect(lambda _: self.invalidate())
        self.temperature.valueChanged.connect(lambda _: self.invalidate())
        self.continuous.toggled.connect(lambda on: on and self.resample())
        self.resample_button.clicked.connect(self.resample)
        self.show_data.toggled.connect(self._show_data)
        self.as_images.toggled.connect(lambda _: self._apply_mode())
        self.plot.scene().sigMouseClicked.connect(self._clicked)
        self.as_images.toggled.connect(lambda _: self.mode_changed.emit())
        self.by_context.toggled.connect(lambda _: self.invalidate())
        self.by_context.toggled.connect(lambda _: self.count.setEnabled(self.sweep() is None))
        # pictures by context value or not: the sweep's samples are not the scatter's
        self.as_images.toggled.connect(lambda _: self.by_context.isChecked()
                                       and self.invalidate())

    def model_changed(self):
        self.points = None
        self.show_data.setChecked(self.info["reference_is_data"])
        self.show_data.setToolTip(f"The training data: {self.info['reference_source']}")
        image = self.info["image"]
        self.as_images.blockSignals(True)
        self.as_images.setChecked(bool(image and image["declared"]))
        self.as_images.blockSignals(False)
        sweep = self._stepped_coordinate()
        self.by_context.blockSignals(True)
        self.by_context.setChecked(False)         # a new model opens at its own context
        self.by_context.blockSignals(False)
        if sweep is not None:
            self.by_context.setText(f"One row per {sweep[2]}")
        self._apply_mode()

    def model_reloaded(self):
        if self.info["image"] is None:
            self.as_images.setChecked(False)
        self._apply_mode(keep_range=True)

    def images_shown(self):
        """True when the samples are drawn as pictures."""
        return bool(self.info and self.info["image"] and self.as_images.isChecked())

    def _stepped_coordinate(self):
        """`(k, values, name)` for the first context coordinate that moves in steps over
        a range of at most `SWEEP_MAX_VALUES` values, or None."""
        steps, ranges = self.info["context_steps"], self.info["context_ranges"]
        for k, step in enumerate(steps or []):
            if step is None or not ranges:
                continue
            low, high = ranges[k]
            values = geometry.stepped_values(low, high, step)
            if len(values) <= SWEEP_MAX_VALUES:
                return k, values.tolist(), self.info["context_names"][k]
        return None

    def sweep(self):
        """`(k, values, name)` when the samples are drawn one row per context value."""
        if not (self.images_shown() and self.by_context.isChecked()):
            return None
        return self._stepped_coordinate()

    def _apply_mode(self, keep_range=False):
        """Scatter or pictures: shows the items, axes and controls of the mode."""
        on = self.images_shown()
        self.as_images.setVisible(self.info["image"] is not None)
        self.by_context.setVisible(on and self._stepped_coordinate() is not None)
        self.count.setEnabled(self.sweep() is None)       # a sweep draws SWEEP_PER per value
        self.show_data.setVisible(self.info["reference_is_data"])     # (room for by_context)
        show_pictures(self.plot, self.image_item, (self.cloud, self.data_item), on)
        if self.points is not None:
            self._say_drawn()
        if not on:
            self.plot.getPlotItem().setTitle(None)
        if on:
            self._draw_images()
        elif not keep_range:
            self.projection_changed()
        else:
            self._show_data(self.show_data.isChecked())

    def _say_drawn(self):
        """The label under the plot: the seed, temperature and what is drawn of the
        samples (in pictures, the first IMAGE_GRID and their size); and the view's
        message when no sample is finite."""
        value, n = self.drawn, len(self.points)
        finite = int(finite_rows(self.points).sum())
        shown = f"{n:,} samples" if finite == n else f"{finite:,} of {n:,} samples finite"
        if value.get("sweep"):
            swept = value["sweep"]
            name = self.info["context_names"][swept["coordinate"]]
            shown = f"{swept['per']} samples at each {name}"
            if finite < n:
                shown += f" ({finite:,} of {n:,} finite)"
        if self.images_shown():
            h, w = self.info["image"]["shape"]
            if not value.get("sweep"):
                shown = f"the first {min(n, IMAGE_GRID)} of {shown}"
            shown += f", {h}×{w} pixels"
        self.seed_label.setText(
            f"seed {value['seed']} · T = {value['temperature']:.2f} · {shown}")
        self.say_finding(
            none_finite_text(n, bool(self.info["context_dim"])) if n and not finite else "")

    def _draw_images(self):
        """The samples' grid of pictures; with "Training data", the data sample's
        beside it (right), for comparison."""
        if self.points is None:
            return
        spec = self.info["image"]
        shown, columns = self._shown()
        picture = geometry.tile_images(shown, spec["shape"], columns)
        swept = self.drawn.get("sweep")
        if swept:
            name = self.info["context_names"][swept["coordinate"]]
            values = swept["values"]
            title = (f"one row per {name}: {values[0]:g} (top) to {values[-1]:g}; click one "
                     f"to inspect it")
        elif self.show_data.isChecked() and self.info["reference_is_data"]:
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

    def _shown(self):
        """The samples drawn as pictures and the grid's number of columns."""
        swept = self.drawn.get("sweep")
        if swept:
            return self.points, swept["per"]
        shown = self.points[:IMAGE_GRID]
        return shown, int(np.ceil(np.sqrt(len(shown))))

    def sample_at(self, x, y):
        """The index of the drawn sample picture at `(x, y)` (plot units), or None."""
        if not self.images_shown() or self.points is None:
            return None
        shown, columns = self._shown()
        return geometry.tile_index(x, y, len(shown), self.info["image"]["shape"], columns)

    def _clicked(self, event):
        if event.button() != QtCore.Qt.MouseButton.LeftButton:
            return
        pos = self.plot.getPlotItem().getViewBox().mapSceneToView(event.scenePos())
        k = self.sample_at(pos.x(), pos.y())
        if k is None:
            return
        swept = self.drawn.get("sweep")
        if swept:       # the picture was drawn at its row's context: inspect it there
            self.host.context_panel.set_value(swept["coordinate"],
                                              swept["values"][k // swept["per"]])
        self.host.inspect_point(self.points[k])

    def projection_changed(self):
        if self.images_shown():
            return
        dims = self.projection.dims
        item = self.plot.getPlotItem()
        item.setLabel("bottom", self.axis_name(dims[0]))
        item.setLabel("left", self.axis_name(dims[1]))
        reference = self.projection.project(self.info["reference"])
        show_region(item, geometry.robust_region(reference))
        self._show_data(self.show_data.isChecked())
        if self.points is not None:
            self._draw_cloud()

    def _draw_cloud(self):
        """The scatter of the samples finite in every coordinate."""
        self.cloud.set_points(self.projection.project(self.points[finite_rows(self.points)]))

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
        data = {"samples": self.points, "seed": self.drawn["seed"],
                "temperature": self.drawn["temperature"]}
        swept = self.drawn.get("sweep")
        if swept:       # row by row: `per` samples at each value of one context coordinate
            data.update(sweep_coordinate=swept["coordinate"],
                        sweep_values=np.asarray(swept["values"]), sweep_per=swept["per"])
        return data

    def resample(self):
        self.seed += 1
        self.invalidate()

    @contextlib.contextmanager
    def held_still(self):
        """Continuous mode paused (each batch would ask for the next, and the view
        would never be ready), and resumed after."""
        continuous = self.continuous.isChecked()
        self.continuous.setChecked(False)
        try:
            yield
        finally:
            self.continuous.setChecked(continuous)

    def activate(self):
        super().activate()
        # Continuous mode draws the next batch when one arrives while the view is
        # shown; one that arrived while another tab was shown left the chain broken.
        if self.continuous.isChecked() and self.info is not None \
                and "samples" not in self._waiting:
            self.resample()

    def refresh(self):
        sweep = self.sweep()
        if sweep is not None:
            self.submit("samples", "sample_sweep", sweep[0], sweep[1], SWEEP_PER, self.seed,
                        self.temperature.value())
            return
        self.submit("samples", "samples", self.count.value(), self.seed,
                    self.temperature.value())

    def on_result(self, result):
        value = result.value
        if self.continuous.isChecked() and self.active:
            self.resample()                   # computed while this batch is drawn
        self.points, self.drawn = value["points"], value
        self.keep_drawn()
        if self.images_shown():
            self._draw_images()
        else:
            self._draw_cloud()
        self._say_drawn()
        self.drew()
