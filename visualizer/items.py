"""Fast pyqtgraph items for the views: point clouds moved in place and gridded curves.

`PointCloudItem` paints every point as one small pre-rendered round sprite
with a single `QPainter.drawPixmapFragments` call (the technique of
pyqtgraph's `ScatterPlotItem`): no per-point objects and no per-point
antialiased stroking, so 10,000 points draw in a few milliseconds.
`GridAxisItem` draws pyqtgraph's grid opaque, behind the plot's content;
`HeatmapItem` keeps a colour-mapped image in a format Qt draws fast.
"""

import math

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import internals
from PySide6 import QtCore, QtGui

from visualizer import theme

__all__ = ["PointCloudItem", "GridCurve", "GridAxisItem", "HeatmapItem", "contour_lines"]


class HeatmapItem(pg.ImageItem):
    """`pg.ImageItem` (row-major) whose rendered image is 32-bit RGB.

    pyqtgraph renders a colour-mapped image as an `Indexed8` `QImage`,
    which Qt converts again at every paint: a 256x256 heatmap drawn over
    1124x667 pixels took 2.9 ms per paint here, 0.3 ms as 32-bit RGB. The
    conversion is done once per new image instead (a zoom paints the old
    image once at the new scale, then the new one).
    """

    def __init__(self, **kwargs):
        super().__init__(axisOrder="row-major", **kwargs)

    def render(self):
        super().render()
        image = self.qimage
        if image is not None and image.format() == QtGui.QImage.Format.Format_Indexed8:
            self.qimage = image.convertToFormat(
                QtGui.QImage.Format.Format_ARGB32_Premultiplied if image.hasAlphaChannel()
                else QtGui.QImage.Format.Format_RGB32)


#: Below the `ViewBox` (z = -100): the grid lies behind everything plotted.
GRID_Z = -200


class GridAxisItem(pg.AxisItem):
    """`pg.AxisItem` whose grid lines (and ticks) are opaque: each line's
    translucent colour is blended over `background` in advance, and the axis
    keeps below the plot's `ViewBox` (z = `GRID_Z`, whatever the plot asks),
    so the grid shows on the empty background and behind points, and a
    heatmap covers it.

    Translucent lines take Qt's slow per-pixel blending path here: the
    vertical grid lines alone cost 5-15 ms per axis each time the range
    changed (a zoom or pan recomputes and repaints the grid), on the GUI
    thread and beside the compute thread's heatmap; opaque ones well under
    1 ms.
    """

    def __init__(self, orientation, background, **kwargs):
        super().__init__(orientation, **kwargs)
        self.background_color = QtGui.QColor(background)
        self._pens = {}     # opaque pens, per translucent pen
        self.setZValue(GRID_Z)

    def setZValue(self, z):
        super().setZValue(GRID_Z)     # `PlotItem` puts its axes above the `ViewBox`

    def generateDrawSpecs(self, p):
        specs = super().generateDrawSpecs(p)
        if specs is None:
            return None
        axis_spec, tick_specs, text_specs = specs
        return axis_spec, [(self._opaque(pen), p1, p2) for pen, p1, p2 in tick_specs], text_specs

    def _opaque(self, pen):
        c = pen.color()
        if c.alpha() == 255:
            return pen
        key = (c.rgba(), pen.widthF(), pen.style(), pen.isCosmetic())
        if key not in self._pens:
            bg, a = self.background_color, c.alphaF()
            opaque = QtGui.QPen(pen)
            opaque.setColor(QtGui.QColor.fromRgbF(*(a * u + (1 - a) * v for u, v in (
                (c.redF(), bg.redF()), (c.greenF(), bg.greenF()), (c.blueF(), bg.blueF())))))
            self._pens[key] = opaque
        return self._pens[key]


def _dot_sprite(color, size):
    """A transparent pixmap holding one antialiased disc of diameter `size` pixels."""
    side = int(math.ceil(size)) + 2
    sprite = QtGui.QPixmap(side, side)
    sprite.fill(QtCore.Qt.GlobalColor.transparent)
    painter = QtGui.QPainter(sprite)
    painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
    painter.setPen(QtCore.Qt.PenStyle.NoPen)
    painter.setBrush(color)
    offset = (side - size) / 2
    painter.drawEllipse(QtCore.QRectF(offset, offset, size, size))
    painter.end()
    return sprite


class PointCloudItem(pg.GraphicsObject):
    """A cloud of equal round points, `set_points(xy)` updates it in place.

    Args:
        color: a `theme.COLORS` name.
        size: point diameter in screen pixels.
        alpha: opacity 0..255.
    """

    def __init__(self, color="samples", size=3.0, alpha=200):
        super().__init__()
        self._sprite = None
        self._fragments = internals.PrimitiveArray(QtGui.QPainter.PixmapFragment, 10)
        self._xy = np.zeros((0, 2))
        self._rect = QtCore.QRectF()
        self.points = np.zeros((0, 2), np.float32)
        self.set_style(color, size, alpha)

    def set_points(self, xy):
        """Shows `xy [N, 2]` (non-finite rows are dropped)."""
        xy = np.asarray(xy, np.float64)
        xy = xy[np.all(np.isfinite(xy), axis=1)]
        if len(xy) != len(self._xy):
            self._fragments.resize(len(xy))
            self._fill_fragments()
        self._xy = xy
        self.points = xy.astype(np.float32)
        self.prepareGeometryChange()
        if len(xy):
            lo, hi = xy.min(0), xy.max(0)
            self._rect = QtCore.QRectF(lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])
        else:
            self._rect = QtCore.QRectF()
        self.update()

    def _fill_fragments(self):
        """Source rectangle, scale, rotation and opacity: the same for every point."""
        if self._fragments.ndarray().size:
            side = self._sprite.width()
            self._fragments.ndarray()[:, 2:] = (0, 0, side, side, 1, 1, 0, 1)

    def set_style(self, color, size, alpha=200):
        """Sets the points' colour (a `theme.COLORS` name), diameter in pixels and opacity."""
        self._sprite = _dot_sprite(theme.color(color, alpha), size)
        self._fill_fragments()
        self.update()

    def boundingRect(self):
        return self._rect

    def dataBounds(self, ax, frac=1.0, orthoRange=None):
        if not len(self._xy):
            return None, None
        lo, hi = self._rect.left(), self._rect.right()
        if ax == 1:
            lo, hi = self._rect.top(), self._rect.bottom()
        return lo, hi

    def paint(self, painter, *args):
        if not len(self._xy):
            return
        # Place the sprites in device pixels: a dot stays round under any axis scaling.
        t = painter.transform()
        x, y = self._xy[:, 0], self._xy[:, 1]
        frag = self._fragments.ndarray()
        frag[:, 0] = t.m11() * x + t.m21() * y + t.dx()
        frag[:, 1] = t.m12() * x + t.m22() * y + t.dy()
        painter.save()
        painter.resetTransform()
        painter.drawPixmapFragments(*self._fragments.drawargs(), self._sprite)
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


def contour_lines(image, region, levels):
    """Iso-lines of `image` (row-major, y up, over `region`) as `(xy, connect)`."""
    x0, x1, y0, y1 = region
    rows, cols = image.shape
    clean = np.where(np.isfinite(image), image, np.nanmin(image[np.isfinite(image)]))
    xs, ys, connect = [], [], []
    for level in levels:
        # pyqtgraph's isocurve takes data indexed [x, y]; paths come back in pixel units
        # from the image's corner (sample i at i + 0.5, its pixel's centre).
        for path in pg.functions.isocurve(clean.T, level, connected=True, extendToEdge=True):
            p = np.asarray(path, np.float64)
            if len(p) < 2:
                continue
            xs.append(x0 + p[:, 0] * (x1 - x0) / cols)
            ys.append(y0 + p[:, 1] * (y1 - y0) / rows)
            c = np.ones(len(p), bool)
            c[-1] = False
            connect.append(c)
    if not xs:
        return np.zeros((0, 2)), np.zeros(0, bool)
    return np.stack([np.concatenate(xs), np.concatenate(ys)], 1), np.concatenate(connect)
