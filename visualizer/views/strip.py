"""The Layers view's strip of small multiples: one thumbnail per state (its grid
and cloud, or its pictures); clicking one jumps to it."""

from PySide6 import QtCore, QtGui, QtWidgets

from visualizer import geometry
from visualizer.items import GridCurve, HeatmapItem, PointCloudItem
from visualizer.views.base import draw_picture, make_plot

__all__ = ["LayerStrip", "STRIP_POINTS", "STRIP_TITLE_WIDTH", "STRIP_HEIGHT",
           "STRIP_MIN_HEIGHT", "THUMBNAIL"]

#: Points of the sample cloud drawn in each thumbnail (at most).
STRIP_POINTS = 600
#: A thumbnail's width and height at full size, in pixels (smaller, the same shape).
THUMBNAIL = (170, 150)
#: Pixels a full-size thumbnail's title may take; longer names end in "…".
STRIP_TITLE_WIDTH = 156
#: The strip's height at full size and at its smallest, in pixels: a thumbnail's
#: height and 32 for margins and scroll bar.
STRIP_HEIGHT, STRIP_MIN_HEIGHT = THUMBNAIL[1] + 32, 110
#: The strip takes this share of the height it shares with the Layers plot
#: (between its smallest and full height), and hides when the plot would be left
#: with less than `STRIP_HIDE_BELOW` pixels.
STRIP_SHARE, STRIP_HIDE_BELOW = 0.3, 140


class LayerStrip(QtWidgets.QScrollArea):
    """Small multiples: one tiny plot per state; clicking one jumps to it."""

    def __init__(self, on_click):
        super().__init__()
        self.on_click = on_click
        self.setWidgetResizable(True)
        self.setFixedHeight(STRIP_HEIGHT)
        self.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.inner = QtWidgets.QWidget()
        self.row = QtWidgets.QHBoxLayout(self.inner)
        self.row.setContentsMargins(4, 4, 4, 4)
        self.setWidget(self.inner)
        self.plots, self._items = [], []
        self._kind = None           # (pictures or points, how many): what the plots show
        self.current = None

    def show_states(self, grid_states, cloud_states, connect, names, regions, pictures=None,
                    levels=None):
        """One thumbnail per state: its grid and cloud over `regions[k]`, or
        `pictures[k]` (a tiled image drawn grey over `levels`). As many states of the
        same kind as shown: the thumbnails are kept and given the new data (making
        them took 40 ms a plot, each time the Layers view drew)."""
        kind = ("pictures" if pictures is not None else "points", len(names))
        if kind != self._kind:
            self._make_plots(len(names), pictures is not None)
            self._kind = kind
        every = max(1, cloud_states.shape[1] // STRIP_POINTS)
        for k, (name, plot, items) in enumerate(zip(names, self.plots, self._items)):
            item = plot.getPlotItem()
            if name != plot.toolTip():
                self._title(plot, name)
            if pictures is not None:
                w, h = draw_picture(items[0], pictures[k], levels)
                x0, x1, y0, y1 = 0, w, 0, h
            else:
                grid, cloud = items
                grid.set_lines(grid_states[k], connect)
                cloud.set_points(cloud_states[k, ::every])
                x0, x1, y0, y1 = regions[k]
                item.setAspectLocked(geometry.is_square(regions[k]))
            item.getViewBox().setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0)

    def _make_plots(self, count, pictures):
        while self.row.count():
            w = self.row.takeAt(0).widget()
            if w is not None:
                w.deleteLater()
        self.plots, self._items, self.current = [], [], None
        for k in range(count):
            plot = make_plot()
            plot.setFixedSize(*self.thumbnail)
            item = plot.getPlotItem()
            item.hideAxis("left")
            item.hideAxis("bottom")
            if pictures:
                items = (HeatmapItem(),)
            else:
                items = (GridCurve("grid", 1.0, 110),
                         PointCloudItem("samples", size=2.0, alpha=200))
            for it in items:
                item.addItem(it)
            plot.scene().sigMouseClicked.connect(lambda ev, k=k: self.on_click(k))
            self.row.addWidget(plot)
            self.plots.append(plot)
            self._items.append(items)
        self.row.addStretch(1)

    @property
    def thumbnail(self):
        """The thumbnails' `(width, height)` for the strip's height (`fit`)."""
        inner = self.height() - (STRIP_HEIGHT - THUMBNAIL[1])
        return round(inner * THUMBNAIL[0] / THUMBNAIL[1]), inner

    def _title(self, plot, name):
        width = STRIP_TITLE_WIDTH - (THUMBNAIL[0] - self.thumbnail[0])
        plot.getPlotItem().setTitle(
            f"<span style='font-size:8pt'>{self.elide(name, width)}</span>")
        plot.setToolTip(name)

    def fit(self, shared):
        """Sizes the strip for `shared` pixels of height that it and the Layers plot
        share: `STRIP_SHARE` of them, from `STRIP_MIN_HEIGHT` to `STRIP_HEIGHT`
        (thumbnails of the same shape, smaller), or none (hidden) when the plot
        would keep less than `STRIP_HIDE_BELOW` (at the window's smallest the
        plot was 40 pixels tall beside a full-size strip)."""
        height = min(STRIP_HEIGHT, max(STRIP_MIN_HEIGHT, round(STRIP_SHARE * shared)))
        visible = shared - height >= STRIP_HIDE_BELOW
        if visible != self.isVisibleTo(self.parentWidget()):
            self.setVisible(visible)
        if not visible or height == self.height():
            return
        self.setFixedHeight(height)
        for plot in self.plots:
            if plot.toolTip():     # first: a title wider than the plot widens its layout
                self._title(plot, plot.toolTip())
            plot.setFixedSize(*self.thumbnail)

    @staticmethod
    def elide(name, width=STRIP_TITLE_WIDTH):
        """`name` cut to `width` pixels of the thumbnails' 8 pt title font, ending in '…'."""
        font = QtGui.QFont()
        font.setPointSize(8)
        return QtGui.QFontMetrics(font).elidedText(name, QtCore.Qt.TextElideMode.ElideRight, width)

    def highlight(self, k):
        if k == self.current:
            return
        self.current = k
        for i, plot in enumerate(self.plots):
            plot.setStyleSheet("border: 2px solid #4fc3f7;" if i == k else "")
        if 0 <= k < len(self.plots):
            self.ensureWidgetVisible(self.plots[k], 0, 0)
