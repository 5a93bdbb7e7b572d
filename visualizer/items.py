"""Fast pyqtgraph items for the views: point clouds moved in place and gridded curves.

`PointCloudItem` keeps its points in a `QPolygonF` whose memory it writes
through a NumPy view, and paints them with one `drawPoints` call: no
per-point objects, so 100,000 points redraw at interactive rates.
"""

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui

from visualizer import theme

__all__ = ["PointCloudItem", "GridCurve"]


class PointCloudItem(pg.GraphicsObject):
    """A cloud of equal round points, `set_points(xy)` updates it in place.

    Args:
        color: a `theme.COLORS` name.
        size: point diameter in screen pixels.
        alpha: opacity 0..255.
    """

    def __init__(self, color="samples", size=3.0, alpha=200):
        super().__init__()
        self._pen = None
        self.set_style(color, size, alpha)
        self._polygon = QtGui.QPolygonF()
        self._buffer = np.zeros((0, 2))
        self._count = 0  # always len(self._buffer): the buffer is resized to fit
        self._rect = QtCore.QRectF()
        self.points = np.zeros((0, 2), np.float32)

    def set_points(self, xy):
        """Shows `xy [N, 2]` (non-finite rows are dropped)."""
        xy = np.asarray(xy, np.float64)
        xy = xy[np.all(np.isfinite(xy), axis=1)]
        n = len(xy)
        if n != len(self._buffer):
            self._polygon = pg.functions.create_qpolygonf(n)
            self._buffer = (pg.functions.ndarray_from_qpolygonf(self._polygon) if n
                            else np.zeros((0, 2)))
        if n:
            self._buffer[:] = xy                  # writes straight into the QPolygonF
        self._count = n
        self.points = xy.astype(np.float32)
        self.prepareGeometryChange()
        if n:
            lo, hi = xy.min(0), xy.max(0)
            self._rect = QtCore.QRectF(lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])
        else:
            self._rect = QtCore.QRectF()
        self.update()

    def set_style(self, color, size, alpha=200):
        """Sets the points' colour (a `theme.COLORS` name), diameter in pixels and opacity."""
        self._pen = theme.pen(color, size, alpha)
        self._pen.setCapStyle(QtCore.Qt.PenCapStyle.RoundCap)
        self.update()

    def boundingRect(self):
        return self._rect

    def dataBounds(self, ax, frac=1.0, orthoRange=None):
        if not self._count:
            return None, None
        lo, hi = self._rect.left(), self._rect.right()
        if ax == 1:
            lo, hi = self._rect.top(), self._rect.bottom()
        return lo, hi

    def paint(self, painter, *args):
        if not self._count:
            return
        # Draw in device pixels: a round dot stays round under any axis scaling.
        device = painter.transform().map(self._polygon)
        painter.save()
        painter.resetTransform()
        painter.setPen(self._pen)
        painter.drawPoints(device)
        painter.restore()


class GridCurve(pg.PlotCurveItem):
    """Many polylines drawn as one curve (a `connect` array separates them)."""

    def __init__(self, color="grid", width=1.0, alpha=150):
        super().__init__(pen=theme.pen(color, width, alpha), antialias=True)
        self.connect_array = None

    def set_lines(self, xy, connect):
        xy = np.asarray(xy, np.float64)
        self.connect_array = np.asarray(connect, bool)
        self.setData(xy[:, 0], xy[:, 1], connect=self.connect_array)
