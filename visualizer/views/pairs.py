"""Pairs view: the flow's samples against the training data in every pair of
chosen coordinates, each coordinate's marginal histograms on the diagonal (a
corner plot).

The other views show two coordinates at a time with the rest held at fixed
values (a slice); this one shows marginals, so a flow of a wider table is
checked against its data column by column and pair by pair.
"""

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from visualizer import marginals, theme
from visualizer.items import PointCloudItem
from visualizer.views.base import (ElidedLabel, View, labeled, style_plot_item,
                                   tick_label_width)
from visualizer.views.samples import finite_rows, none_finite_text, sample_count_box

__all__ = ["PairsView", "DATA_POINTS"]

#: The most training-data points drawn in each scatter.
DATA_POINTS = 10_000
_Checked = QtCore.Qt.CheckState.Checked
#: Pixels between the grid's cells.
CELL_SPACING = 4


class PairsView(View):
    """Scatters of `count` samples (below the diagonal) and of the training data
    (above it) for every pair of the chosen coordinates, each cell showing its
    row's coordinate against its column's (so the data cell (i, j) mirrors the
    samples cell (j, i)), and on the diagonal each coordinate's marginal
    density: a histogram of the samples (filled) and of the data (line) on the
    same bins (`marginals`).

    *Coordinates* picks up to `marginals.MAX_SHOWN` of them (by default
    `marginals.default_coordinates`); the cells of a column share their x
    range and those of a row their y range, so a zoom or pan in one cell
    moves its row and column; a double click on a scatter shows its pair in the
    Samples view (`show_pair`). The samples are drawn at temperature 1 (the
    flow's own distribution, which is what the data are compared with) and,
    for a conditional flow, at the Context panel's context, while the
    training data come from every context (a note says so).
    """

    name, title = "pairs", "Pairs"
    kinds = ("pairs",)
    uses_projection = False

    def __init__(self, host):
        super().__init__(host)
        self.seed = 0
        self.count = sample_count_box()
        self.picker = QtWidgets.QListWidget()
        self.picker_button = QtWidgets.QPushButton()
        menu = QtWidgets.QMenu(self.picker_button)
        holder = QtWidgets.QWidgetAction(menu)      # a list that stays open while ticked
        holder.setDefaultWidget(self.picker)
        menu.addAction(holder)
        self.picker_button.setMenu(menu)
        self.show_data = QtWidgets.QCheckBox("Training data")
        self.resample_button = QtWidgets.QPushButton("Resample  (R)")
        self.seed_label = ElidedLabel("")
        self.seed_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight
                                     | QtCore.Qt.AlignmentFlag.AlignVCenter)
        for w in (labeled("Samples", self.count), labeled("Coordinates", self.picker_button),
                  self.resample_button, self.show_data):
            self.controls.addWidget(w)
        self.controls.addWidget(self.seed_label, 1)
        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setBackground(theme.COLORS["base"])
        self.layout().addWidget(self.canvas, 1)
        self.coords, self.cells, self.items = [], {}, {}
        self.left_axes, self.bottom_axes = [], []     # by row, by column (`_add_axes`)
        self.grid_stale = True      # the grid is not the coordinates' (built when shown)
        self.ranges = None
        self.points, self.drawn = None, {}
        self.marginal = {}          # coordinate -> (edges, flow density, data density)
        self.count.valueChanged.connect(lambda _: self.invalidate())
        self.resample_button.clicked.connect(self.resample)
        self.show_data.toggled.connect(lambda _: self.draw())
        self.picker.itemChanged.connect(self._picked)
        self.canvas.scene().sigMouseClicked.connect(self._clicked)
        self.canvas.installEventFilter(self)      # square cells at each resize

    # -- model and choices ----------------------------------------------------------
    def model_changed(self):
        info = self.info
        self.points = None
        self.ranges = marginals.coordinate_ranges(info["reference"])
        self.show_data.setVisible(info["reference_is_data"])
        self.show_data.blockSignals(True)           # (the grid is the last model's)
        self.show_data.setChecked(info["reference_is_data"])
        self.show_data.setToolTip(f"The training data: {info['reference_source']}")
        self.show_data.blockSignals(False)
        chosen = marginals.default_coordinates(info["event_dim"], info["reference"],
                                               image=info["image"] is not None)
        self.picker.blockSignals(True)
        self.picker.clear()
        for d in range(info["event_dim"]):
            item = QtWidgets.QListWidgetItem(self.axis_name(d))
            item.setFlags(item.flags() | QtCore.Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(_Checked if d in chosen else QtCore.Qt.CheckState.Unchecked)
            self.picker.addItem(item)
        rows = min(info["event_dim"], 12)
        self.picker.setFixedHeight(self.picker.sizeHintForRow(0) * rows
                                   + 2 * self.picker.frameWidth())
        self.picker.blockSignals(False)
        self.set_coordinates(chosen)

    def model_reloaded(self):
        self.draw()                # same coordinates and ranges; new samples to come

    def set_coordinates(self, dims):
        """Shows the coordinates `dims` (indices from 0, at most `marginals.MAX_SHOWN`,
        drawn in index order) and ticks them in *Coordinates*."""
        dims = sorted({int(d) for d in dims})
        D = self.info["event_dim"]
        if not dims or len(dims) > marginals.MAX_SHOWN or not all(0 <= d < D for d in dims):
            raise ValueError(f"expected 1 to {marginals.MAX_SHOWN} different coordinates in "
                             f"[0, {D - 1}]; received {dims}.")
        self.picker.blockSignals(True)
        for d in range(self.picker.count()):
            item = self.picker.item(d)
            item.setCheckState(_Checked if d in dims else QtCore.Qt.CheckState.Unchecked)
            # full: nothing more to tick; one left: it cannot be unticked
            enabled = (d in dims and len(dims) > 1) or (
                d not in dims and len(dims) < marginals.MAX_SHOWN)
            flags = item.flags()
            item.setFlags(flags | QtCore.Qt.ItemFlag.ItemIsEnabled if enabled
                          else flags & ~QtCore.Qt.ItemFlag.ItemIsEnabled)
        self.picker.blockSignals(False)
        self.picker_button.setText(self._coordinates_text(dims))
        self.coords = dims
        self.grid_stale = True
        if self.active:
            self._show_grid()

    def activate(self):
        # the grid of up to 36 plots is built when the view is shown: built on every
        # model opened, it took 0.7 s of the window's thread a model
        if self.grid_stale and self.info is not None:
            self._show_grid()
        super().activate()

    def _show_grid(self):
        self._build_grid()
        self.grid_stale = False
        self.draw()

    def _coordinates_text(self, dims):
        names = [self.axis_name(d) for d in dims]
        text = ", ".join(names)
        if len(text) > 40:
            text = f"{len(dims)} of {self.info['event_dim']}"
        return text

    def _picked(self, _item):
        dims = [d for d in range(self.picker.count())
                if self.picker.item(d).checkState() == _Checked]
        if dims and len(dims) <= marginals.MAX_SHOWN:
            self.set_coordinates(dims)
        else:                           # (a disabled item cannot be ticked; kept for safety)
            self.set_coordinates(self.coords)

    # -- the grid of plots ------------------------------------------------------------
    def _build_grid(self):
        """One plot per cell of the chosen coordinates' grid: the flow's samples below
        the diagonal, the data above it (in the same rows' and columns' axes: each
        data cell mirrors a samples cell), marginal histograms on it. The axes stand
        beside the grid (`_add_axes`), so every cell's plot area is one size."""
        self.canvas.clear()
        self.cells, self.items = {}, {}
        k = len(self.coords)
        for i in range(k):
            for j in range(k):
                plot = self.canvas.addPlot(row=i, col=j + 1)
                style_plot_item(plot)
                for name in ("left", "bottom"):
                    plot.hideAxis(name)
                if i == j:
                    data = pg.PlotDataItem(stepMode="center", pen=theme.pen("data", 1.5))
                    flow = pg.PlotDataItem(stepMode="center", fillLevel=0,
                                           pen=theme.pen("samples", 1.2),
                                           brush=theme.color("samples", 90))
                    plot.setMouseEnabled(y=False)
                    plot.addItem(flow)
                    plot.addItem(data)
                else:
                    cloud = PointCloudItem("samples" if i > j else "data", size=2.0,
                                           alpha=150 if i > j else 170)
                    plot.addItem(cloud)
                    flow, data = (cloud, None) if i > j else (None, cloud)
                self.cells[i, j], self.items[i, j] = plot, (data, flow)
        rows = {i: self.cells[i, 1 if i == 0 else 0] for i in range(k)} if k > 1 else {}
        for (i, j), plot in self.cells.items():
            if i != k - 1:
                plot.setXLink(self.cells[k - 1, j])
            if i != j and plot is not rows[i]:
                plot.setYLink(rows[i])
        self._add_axes(k)
        for j, d in enumerate(self.coords):
            self.cells[k - 1, j].setXRange(*self.ranges[d], padding=0)
            if j in rows:
                rows[j].setYRange(*self.ranges[d], padding=0)
        layout = self.canvas.ci.layout
        for n in range(k):      # the cells share the room the axes leave equally
            layout.setRowStretchFactor(n, 1)
            layout.setColumnStretchFactor(n + 1, 1)
        self.canvas.ci.setSpacing(CELL_SPACING)
        self._square_cells()

    def eventFilter(self, watched, event):
        if watched is self.canvas and event.type() == QtCore.QEvent.Type.Resize:
            self._square_cells()
        return super().eventFilter(watched, event)

    def _square_cells(self):
        """Square cells, as in the other views a circle stays round on one scale: the
        grid's cells take the side the canvas' shorter direction leaves them (the
        axes beside and below the grid taken off), centred in the other."""
        k = len(self.coords)
        if not self.left_axes or not self.bottom_axes or k == 0:
            return
        w = self.canvas.width() - self.left_axes[0].width() - CELL_SPACING * k
        h = self.canvas.height() - self.bottom_axes[0].height() - CELL_SPACING * k
        side = max(min(w, h), 0) / k
        across, down = (w - k * side) / 2, (h - k * side) / 2
        self.canvas.ci.setContentsMargins(across, down, across, down)

    def _add_axes(self, k):
        """The axes of the grid's `k` rows (column 0, each following its first cell's
        y range) and `k` columns (row k, following its last cell's x range), in
        `left_axes` and `bottom_axes`; row 0's, beside a density, has no ticks (its
        scale is column 0's)."""
        width = max(tick_label_width(pg.AxisItem("left"), *self.ranges[d])
                    for d in self.coords) + 20      # (and the axis' name)
        self.left_axes, self.bottom_axes = [], []
        for i in range(k):
            axis = self._axis("left", self.cells[i, 0])
            axis.setWidth(width)
            if i == 0:
                axis.setStyle(showValues=False)
                axis.setTicks([[], []])
            else:
                axis.setLabel(self.axis_name(self.coords[i]))
            self.canvas.addItem(axis, row=i, col=0)
            self.left_axes.append(axis)
        for j in range(k):
            axis = self._axis("bottom", self.cells[k - 1, j])
            axis.setLabel(self.axis_name(self.coords[j]))
            self.canvas.addItem(axis, row=k, col=j + 1)
            self.bottom_axes.append(axis)

    @staticmethod
    def _axis(name, plot):
        """An axis on side `name` following `plot`'s view, styled as the views' axes."""
        axis = pg.AxisItem(name)
        axis.linkToView(plot.getViewBox())
        axis.setTextPen(theme.color("muted"))
        axis.setPen(theme.color("muted"))
        axis.enableAutoSIPrefix(False)
        return axis

    def cell_at(self, scene_pos):
        """`(i, j)` of the cell whose plot area holds `scene_pos`, or None."""
        for key, plot in self.cells.items():
            if plot.getViewBox().sceneBoundingRect().contains(scene_pos):
                return key
        return None

    def show_pair(self, i, j):
        """Shows the pair of cell `(i, j)` (off the diagonal) in the Samples view: its
        column's coordinate across, its row's up (the other views follow)."""
        if i == j:
            raise ValueError(f"cell ({i}, {i}) is a marginal; a pair is a cell off the "
                             f"diagonal.")
        self.host.panel.set_dims(self.coords[j], self.coords[i])
        self.host.show_view("samples")

    def _clicked(self, event):
        if event.button() != QtCore.Qt.MouseButton.LeftButton or not event.double():
            return
        cell = self.cell_at(event.scenePos())
        if cell is not None and cell[0] != cell[1]:
            self.show_pair(*cell)

    def _data(self):
        if not (self.show_data.isChecked() and self.info["reference_is_data"]):
            return None
        return self.info["reference"][:DATA_POINTS]

    def draw(self):
        """Draws the samples and the data in their cells, and the diagonal's
        histograms on the ranges of their columns."""
        if self.info is None or self.grid_stale:
            return
        data = self._data()
        none = np.zeros((0, 2))
        drawn = self._scattered(data)
        for (i, j), (data_item, flow_item) in self.items.items():
            di, dj = self.coords[i], self.coords[j]
            if i == j:
                columns = [[] if self.points is None else self.points[:, di],
                           [] if data is None else data[:, di]]
                edges, (flow, seen) = marginals.marginal_densities(columns, *self.ranges[di])
                flow_item.setData(edges, flow)
                if data is None:
                    data_item.setData([], [])
                else:
                    data_item.setData(edges, seen)
                self.marginal[di] = (edges, flow, seen)
                top = max(flow.max(), seen.max())
                self.cells[i, j].setYRange(0, top * 1.08 if top > 0 else 1.0, padding=0)
            elif i > j:
                flow_item.set_points(none if self.points is None else drawn[:, [dj, di]])
            else:
                data_item.set_points(none if data is None else data[:, [dj, di]])
        conditional = self.info["context_dim"] and data is not None
        self.show_note("The flow's samples are drawn at the Context panel's context; the "
                       "training data come from every context." if conditional else "")
        if self.points is not None:
            self._label(data, drawn)

    def _label(self, data, drawn):
        """Says what is drawn: how many samples (`drawn` of them in the scatters; those
        with NaN or inf, not drawn, counted apart) and `data` points, or why none
        are; a message when no sample is finite."""
        n, finite = len(self.points), int(finite_rows(self.points).sum())
        shown = f"{n:,} flow samples (orange, below the diagonal"
        if finite < n:
            shown += f"; {finite:,} finite"
        if len(drawn) < n:
            shown += f"; {int(finite_rows(drawn).sum()):,} drawn"
        shown += ")"
        if data is not None:
            shown += f" · {len(data):,} training points (grey, above)"
        elif self.info["reference_is_data"]:
            shown += " · training data hidden (above the diagonal)"
        else:       # the cells above stay empty: say why
            shown += " · no training data known (above the diagonal)"
        self.seed_label.setText(f"seed {self.drawn['seed']} · {shown}")
        self.say_finding(
            none_finite_text(n, bool(self.info["context_dim"])) if n and not finite else "")

    def _scattered(self, data):
        """The samples the scatters draw: as many as the `data` points shown (the first
        ones), so that the two clouds' densities compare; all without data."""
        if self.points is None or data is None:
            return self.points
        return self.points[:len(data)]

    # -- requests and results -----------------------------------------------------------
    def resample(self):
        self.seed += 1
        self.invalidate()

    def refresh(self):
        self.submit("pairs", "samples", self.count.value(), self.seed, 1.0)

    def on_result(self, result):
        value = result.value
        self.points, self.drawn = value["points"], value
        self.keep_drawn()
        self.draw()
        self.drew()

    def export_data(self):
        """The samples drawn (`[n, D]`, every coordinate), the coordinates shown
        (`dims`), and the diagonal's histograms: `edges [k, BINS + 1]`,
        `flow_density` and `data_density` `[k, BINS]` (zeros without data)."""
        if self.points is None:
            return None
        edges, flow, seen = (np.stack([self.marginal[d][n] for d in self.coords])
                             for n in range(3))
        return {"samples": self.points, "seed": self.drawn["seed"],
                "dims": np.asarray(self.coords), "edges": edges, "flow_density": flow,
                "data_density": seen}
