"""`View`: what every view shares (requests, readiness, plot styling, messages).

A view draws arrays; it never waits on TensorFlow. It asks the main
window (`host`) for computations with `submit`, and the window hands each
`worker.Result` back to `receive`.
"""

import contextlib

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from visualizer import geometry, theme
from visualizer.items import GridAxisItem

__all__ = ["View", "ElidedLabel", "make_plot", "style_plot_item", "axis_name", "labeled",
           "show_pictures",
           "draw_picture", "show_region", "tick_label_width"]


def axis_name(dim, space="x", names=None):
    """`x3` or `z3` for coordinate `dim` (from 0); a data coordinate (`space` "x")
    goes by its column name when `names` (a model's `data_names`) has them."""
    if space == "x" and names:
        return names[dim]
    return f"{space}{dim + 1}"


def make_plot(parent=None, aspect=True):
    """A styled `pg.PlotWidget` (grid, locked aspect, no auto-range, menu off).

    The grid is opaque and lies behind the plotted items (see `GridAxisItem`).
    """
    plot = pg.PlotWidget(parent, axisItems={
        name: GridAxisItem(name, theme.COLORS["base"]) for name in ("left", "bottom")})
    item = plot.getPlotItem()
    item.showGrid(x=True, y=True, alpha=0.12)
    style_plot_item(item)
    if aspect:
        item.setAspectLocked(True)
    for name in ("left", "bottom"):
        # Two levels of ticks and grid lines, not pyqtgraph's three: a calmer grid, and
        # each zoom or pan lays out about a fifth of the lines (17 instead of 88 on the rings view).
        item.getAxis(name).setStyle(maxTickLevel=1)
    return plot


def style_plot_item(item):
    """The views' plot styling of a `pg.PlotItem`: no context menu or auto-range
    button, no auto-range, muted axes without SI prefixes (the axes carry no
    units: no prefix to recompute, and relabel, on each zoom)."""
    item.setMenuEnabled(False)
    item.hideButtons()
    item.getViewBox().disableAutoRange()
    for name in ("left", "bottom"):
        axis = item.getAxis(name)
        axis.setTextPen(theme.color("muted"))
        axis.setPen(theme.color("muted"))
        axis.enableAutoSIPrefix(False)


def show_region(plot_item, region):
    """Shows `region` `(x0, x1, y0, y1)` in `plot_item`, with one scale for both axes
    (aspect locked) when the region is square and a scale per axis otherwise
    (`geometry.robust_region` leaves it unsquared for coordinates whose spreads
    differ by more than `geometry.SCALE_RATIO`: age against income)."""
    x0, x1, y0, y1 = region
    plot_item.setAspectLocked(geometry.is_square(region))
    plot_item.getViewBox().setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0)


def tick_label_width(axis, lo, hi, minimum=48):
    """The width (pixels) the vertical `axis` needs for its tick labels over
    `[lo, hi]`, at least `minimum`: 48 holds unit-scale labels, and data in
    other units (incomes: 150000) need more."""
    length = max(axis.height(), 100)
    labels = [text for spacing, values in axis.tickValues(lo, hi, length)
              for text in axis.tickStrings(values, axis.scale, spacing)]
    font = axis.style.get("tickFont") or axis.font()
    widest = max((QtGui.QFontMetrics(font).horizontalAdvance(t) for t in labels), default=0)
    return max(minimum, widest + 16)


def show_pictures(plot, picture_item, point_items, on):
    """Switches `plot` between its point items and `picture_item` (the axes hidden
    while pictures are shown: they are in pixels, not coordinates)."""
    for item in point_items:
        item.setVisible(not on)
    picture_item.setVisible(on)
    for axis in ("bottom", "left"):
        plot.getPlotItem().showAxis(axis, not on)


def draw_picture(item, picture, levels):
    """Draws `picture [h, w]` on `item` in grey, black to white over `levels`, with
    its lower left corner at (0, 0) and one unit per pixel; returns `(w, h)`."""
    item.setImage(picture, levels=levels, lut=theme.GREY)
    h, w = picture.shape
    item.setRect(QtCore.QRectF(0, 0, w, h))
    return w, h


class ElidedLabel(QtWidgets.QLabel):
    """A one-line label that gives up width instead of widening the window: when its
    text does not fit, it is cut at the right end with "…" (`shown_text`), and the
    tooltip holds the whole text. `text()` is the whole text."""

    def __init__(self, text=""):
        super().__init__(text)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored,
                           QtWidgets.QSizePolicy.Policy.Preferred)

    def shown_text(self):
        """The text as drawn: whole, or cut to the label's width and ending in "…"."""
        return self.fontMetrics().elidedText(self.text(), QtCore.Qt.TextElideMode.ElideRight,
                                             max(self.contentsRect().width(), 0))

    def setText(self, text):
        super().setText(text)
        self._update_tip()

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._update_tip()

    def _update_tip(self):
        self.setToolTip(self.text() if self.shown_text() != self.text() else "")

    def paintEvent(self, event):
        painter = QtGui.QPainter(self)
        self.style().drawItemText(painter, self.contentsRect(), int(self.alignment()),
                                  self.palette(), self.isEnabled(), self.shown_text(),
                                  self.foregroundRole())


def labeled(text, widget):
    """A tiny `[label widget]` row for control bars."""
    box = QtWidgets.QWidget()
    row = QtWidgets.QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    row.setSpacing(4)
    row.addWidget(QtWidgets.QLabel(text))
    row.addWidget(widget)
    return box


class View(QtWidgets.QWidget):
    """Base of the views.

    Subclasses set `name`/`title`, build their widgets in `__init__`, and
    implement `refresh()` (submit what the current model and settings need)
    and `on_result(result)` (draw).

    Signals:
        frame_drawn: emitted after each new frame is drawn.
        mode_changed: the view began or stopped drawing its points as pictures.
    """

    name = ""
    title = ""
    kinds = ()          # the request kinds this view submits (results are routed by kind)
    # drawn through the window's projection (two coordinates, the others held); the
    # Pairs view, which draws marginals, is not
    uses_projection = True
    # draws a slice at the projection's held values (the Samples view, a scatter of
    # every sample's two coordinates, holds none)
    holds_values = True
    frame_drawn = QtCore.Signal()
    mode_changed = QtCore.Signal()      # points became pictures or back (`images_shown`)

    def __init__(self, host):
        super().__init__()
        self.host = host
        self.info = None
        self.projection = None
        self.active = False
        self.stale = True
        self.frames = 0
        self._latest = {}
        self._waiting = set()
        self._sent = {}            # request id -> (kind, context) of those not answered
        # the context the result being handled was computed at, and the one of the
        # arrays drawn (`export_data`'s; the views set it, `keep_drawn`), for a
        # conditional flow; the same of the projection (coordinates shown, values held)
        self.result_context = self.drawn_context = None
        self.result_projection = self.drawn_projection = None
        self.controls = QtWidgets.QHBoxLayout()
        self.controls.setContentsMargins(8, 6, 8, 0)
        self.message = QtWidgets.QLabel("")
        self.message.setObjectName("message")
        self.message.setWordWrap(True)
        self.message.hide()
        self._said = ""     # what `say_finding` showed last
        self.note = QtWidgets.QLabel("")
        self.note.setObjectName("note")
        self.note.setWordWrap(True)
        self.note.hide()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.controls)
        layout.addWidget(self.message)
        layout.addWidget(self.note)

    # -- model and activation ----------------------------------------------
    def set_model(self, info, projection, reload=False):
        """Shows the model `info` (its `compute.describe` dict) through `projection`.
        `reload`: the same model file opened again (new weights, same dimensions and
        context): what the user set (region, layer, point, choices) is kept."""
        self.info, self.projection = info, projection
        self._latest.clear()
        self._waiting.clear()
        self._sent.clear()
        if not reload:
            self.drawn_context = self.drawn_projection = None
        self.show_message("")
        self.show_note("")
        if reload:
            self.model_reloaded()
        else:
            self.model_changed()
        self.invalidate()

    def axis_name(self, dim, space="x"):
        """`axis_name` with the model's data column names (`data_names`), if any."""
        return axis_name(dim, space, (self.info or {}).get("data_names"))

    def model_changed(self):
        """Hook: reset per-model state (ranges, sliders)."""

    def model_reloaded(self):
        """Hook: the same model with new weights; keep the user's state where it still
        applies (what is drawn stays until the new results replace it). Default:
        `model_changed`."""
        self.model_changed()

    def set_projection(self, projection):
        self.projection = projection
        self.projection_changed()
        self.invalidate()

    def projection_changed(self):
        """Hook: the displayed coordinates or held values changed."""

    def set_context(self, context):
        """A conditional flow is now shown at `context` (sent with every request by
        the window): what is drawn is out of date."""
        self.invalidate()

    def invalidate(self):
        """Marks the view out of date; refreshes now if visible."""
        self.stale = True
        if self.active and self.info is not None:
            self.stale = False
            self.refresh()

    def activate(self):
        self.active = True
        if self.stale:
            self.invalidate()

    def deactivate(self):
        self.active = False

    def refresh(self):
        raise NotImplementedError

    # -- requests and results ---------------------------------------------------
    def submit(self, kind, func, *args, **kwargs):
        self._waiting.add(kind)
        self._latest[kind] = self.host.submit(kind, func, *args, **kwargs)
        # (sent with it; a projection is a snapshot, replaced on every change)
        self._sent[self._latest[kind]] = (kind, self.host.context, self.projection)

    def _answered(self, result):
        """`(context, projection)` `result`'s request was computed at; forgets it, and
        the requests of its kind asked before it (replaced while they waited: never
        answered)."""
        answered = (None, None)
        for request_id, (kind, *sent) in list(self._sent.items()):
            if kind == result.kind and request_id <= result.request_id:
                del self._sent[request_id]
                if request_id == result.request_id:
                    answered = tuple(sent)
        return answered

    def keep_drawn(self, projection=False):
        """Call when the result being handled is drawn: what it was computed at is
        what `export_data`'s arrays are of: `drawn_context`, and with `projection`
        (arrays of the shown coordinates at the held values, as a heatmap's)
        `drawn_projection`; without, the arrays are of every coordinate, and the
        projection drawn is the panel's (None)."""
        self.drawn_context = self.result_context
        self.drawn_projection = self.result_projection if projection else None

    def receive(self, result):
        self.result_context, self.result_projection = self._answered(result)
        if result.error == "stale":
            return
        if self._latest.get(result.kind) == result.request_id:
            self._waiting.discard(result.kind)
        if result.error:
            self.on_error(result)
        else:
            self.on_result(result)

    def on_result(self, result):
        raise NotImplementedError

    def on_error(self, result):
        self.show_message(f"{self.title}: {result.error}")

    def drew(self):
        """Call after drawing a frame: counts it for the FPS readout."""
        self.frames += 1
        self.host.frame_drawn(self)
        self.frame_drawn.emit()

    def is_ready(self):
        """True when the view has drawn what the current settings ask for."""
        return (self.info is not None and not self.stale and not self._waiting
                and (self.frames > 0 or self.message.isVisibleTo(self)))

    def show_message(self, text):
        """Shows `text` as the view's message (it cannot draw what was asked); "" hides it."""
        self.message.setText(text)
        self.message.setVisible(bool(text))

    def say_finding(self, text):
        """Shows `text`, what the view found it cannot draw (nothing finite), as its
        message; "" hides the message only if it is still the one this showed last
        (no longer true), leaving another (an error) in place."""
        if text:
            self.show_message(text)
        elif self._said and self.message.text() == self._said:
            self.show_message("")
        self._said = text

    def show_note(self, text):
        """Shows `text` as a quiet note about what is drawn; "" hides it."""
        self.note.setText(text)
        self.note.setVisible(bool(text))

    # -- keyboard actions (overridden where they mean something) ------------------
    def step_layer(self, delta):
        """Previous/next layer; only the layers view acts on it."""

    def toggle_play(self):
        """Play/pause; only the layers view acts on it."""

    def resample(self):
        """New samples; only the Samples and Pairs views act on it."""

    @contextlib.contextmanager
    def held_still(self):
        """While the view is recorded (`animation.record_context`): it draws only what
        its settings ask for, so each frame becomes ready (the Samples view pauses its
        continuous mode)."""
        yield

    def export_widget(self):
        """The widget saved by File > Export view as PNG."""
        return self

    def images_shown(self):
        """True when the view draws its points as pictures (no 2-D projection used)."""
        return False

    def shows_projection(self):
        """True when the view draws the two coordinates chosen in the *Dimensions
        shown* panel (with the others held there): a view that `uses_projection`,
        while it does not draw pictures."""
        return self.uses_projection and not self.images_shown()

    def export_data(self):
        """What the view draws, as named arrays (File > Export view data, saved with
        `numpy.savez`), or None when it has drawn nothing yet."""
        return None
