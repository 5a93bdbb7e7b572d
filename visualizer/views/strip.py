"""The Layers view's strip of small multiples: one thumbnail per state (its grid
and cloud, or its pictures); clicking one jumps to it."""

from PySide6 import QtCore, QtGui, QtWidgets

from visualizer import geometry
from visualizer.items import GridCurve, HeatmapItem, PointCloudItem
from visualizer.views.base import draw_picture, make_plot

__all__ = ["LayerStrip", "STRIP_POINTS", "STRIP_TITLE_WIDTH"]

#: Points of the sample cloud drawn in each thumbnail (at most).
STRIP_POINTS = 600
#: Pixels a thumbnail title may take (the thumbnails are 170 wide); longer names end in "…".
STRIP_TITLE_WIDTH = 156


class LayerStrip(QtWidgets.QScrollArea):
    """Small multiples: one tiny plot per state; clicking one jumps to it."""

    def __init__(self, on_click):
        super().__init__()
        self.on_click = on_click
        self.setWidgetResizable(True)
        self.setFixedHeight(182)
        self.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.inner = QtWidgets.QWidget()
        self.row = QtWidgets.QHBoxLayout(self.inner)
        self.row.setContentsMargins(4, 4, 4, 4)
        self.setWidget(self.inner)
        self.plots = []
        self.current = None

    def show_states(self, grid_states, cloud_states, connect, names, regions, pictures=None,
                    levels=None):
        """One thumbnail per state: its grid and cloud over `regions[k]`, or
        `pictures[k]` (a tiled image drawn grey over `levels`)."""
        while self.row.count():
            w = self.row.takeAt(0).widget()
            if w is not None:
                w.deleteLater()
        self.plots, self.current = [], None
        every = max(1, cloud_states.shape[1] // STRIP_POINTS)
        for k, name in enumerate(names):
            plot = make_plot()
            plot.setFixedSize(170, 150)
            item = plot.getPlotItem()
            item.hideAxis("left")
            item.hideAxis("bottom")
            item.setTitle(f"<span style='font-size:8pt'>{self.elide(name)}</span>")
            plot.setToolTip(name)
            if pictures is not None:
                image = HeatmapItem()
                item.addItem(image)
                w, h = draw_picture(image, pictures[k], levels)
                x0, x1, y0, y1 = 0, w, 0, h
            else:
                grid = GridCurve("grid", 1.0, 110)
                grid.set_lines(grid_states[k], connect)
                cloud = PointCloudItem("samples", size=2.0, alpha=200)
                cloud.set_points(cloud_states[k, ::every])
                item.addItem(grid)
                item.addItem(cloud)
                x0, x1, y0, y1 = regions[k]
                item.setAspectLocked(geometry.is_square(regions[k]))
            item.getViewBox().setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0)
            plot.scene().sigMouseClicked.connect(lambda ev, k=k: self.on_click(k))
            self.row.addWidget(plot)
            self.plots.append(plot)
        self.row.addStretch(1)

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
