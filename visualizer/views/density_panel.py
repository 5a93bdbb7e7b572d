"""One heatmap panel of the Density view, and the words that label it.

`HeatmapPanel` is a plot with its heatmap, contour lines and title, keeping the
log-density it drew; `heatmap_title` and `bar_label` say what a heatmap computed
by `compute` holds: `log p(x)` or `p(x)`, given a context, or a target's
normalised density.
"""

import numpy as np
from PySide6 import QtCore

from visualizer.items import GridCurve, HeatmapItem, contour_lines
from visualizer.views.base import make_plot

__all__ = ["CONTOUR_LEVELS", "heatmap_title", "bar_label", "HeatmapPanel"]

CONTOUR_LEVELS = 8


def _quantity(value, log_scale):
    """What a heatmap computed by `compute` (its result dict `value`) holds, on the
    scale shown: `log p(x)` or `p(x)`, `| c` for a conditional flow, and for a target
    its normalised density `log p~(x) − log Z` or `p~(x) / Z`."""
    if "target" in value:
        return "log p~(x) − log Z" if log_scale else "p~(x) / Z"
    given = " | c" if value.get("context") is not None else ""
    return f"log p(x{given})" if log_scale else f"p(x{given})"


def heatmap_title(value, log_scale=True, context_names=None):
    """The title of a heatmap computed by `compute` (its result dict `value`); a
    conditional flow's context by the Context panel's names (`context_names`), as
    `temperature = 15`, else as `c = (15)`."""
    if not value:
        return ""
    shown = _quantity(value, log_scale)
    if "target" in value:
        return f"target {value['target']}: {shown} (normalised)"
    context = value.get("context")
    if context is not None and context_names and len(context_names) == len(context):
        shown += ", " + ", ".join(f"{name} = {v:g}" for name, v in zip(context_names, context))
    elif context is not None:                   # a conditional flow, at context c
        shown += ", c = (" + ", ".join(f"{v:g}" for v in context) + ")"
    return f"flow: {shown} at its own samples" if "samples" in value else f"flow: {shown}"


def bar_label(values, log_scale):
    """The colour bar's label: the quantity of each heatmap it covers (left, right)."""
    quantities = [_quantity(v, log_scale) for v in values]
    if len(set(quantities)) == 1:
        return quantities[0]
    return " · ".join(f"{q} ({side})" for q, side in zip(quantities, ("left", "right")))


class HeatmapPanel:
    """One heatmap plot: image, contours, title; keeps the log-density it drew."""

    def __init__(self):
        self.plot = make_plot()
        self.image_item = HeatmapItem()
        self.contour_item = GridCurve("contour", 1.0, 120)
        self.plot.addItem(self.image_item)
        self.plot.addItem(self.contour_item)
        self.image = self.region = self.value = None
        self._density = None        # exp(image) in float64, made once per image (`shown`)
        self.title = None

    def clear(self):
        self.image = self.region = self.value = self._density = None
        self.image_item.clear()
        self.contour_item.set_lines(np.zeros((0, 2)), np.zeros(0, bool))

    def set_value(self, value):
        self.value, self.image, self.region = value, value["image"], value["region"]
        self._density = None

    def shown(self, log_scale):
        """The log-density, or the density (in float64: a float32 p(x) is 0 below
        log p = -104, which a 2-D standard normal reaches 14 units from its mean;
        float64 reaches down to -745)."""
        if log_scale:
            return self.image
        if self._density is None:     # (a draw asks for it up to four times)
            self._density = np.exp(self.image.astype(np.float64))
        return self._density

    def largest_log_density(self):
        """The largest finite log p(x) drawn, or None."""
        finite = self.image[np.isfinite(self.image)]
        return float(finite.max()) if finite.size else None

    def any_finite(self):
        """Whether some pixel's log-density is finite (not NaN, not -inf)."""
        return bool(np.isfinite(self.image).any())

    def drawable(self, log_scale):
        """Whether some pixel has a value to draw on the scale: a finite log p(x),
        and for p(x) one above 0 in float64."""
        return self.any_finite() and (log_scale or bool(self.shown(False).max() > 0))

    def draw(self, log_scale, levels, contours):
        """Draws the heatmap over `levels` (NaN and -inf at the bottom), or nothing
        when no pixel has a value to draw (a colour there would mean nothing)."""
        if not self.drawable(log_scale):
            self.image_item.clear()
            self.contour_item.set_lines(np.zeros((0, 2)), np.zeros(0, bool))
            return
        lo, hi = levels
        shown = np.nan_to_num(self.shown(log_scale), nan=lo, neginf=lo, posinf=hi)
        self.image_item.setImage(shown, autoLevels=False, levels=levels)
        x0, x1, y0, y1 = self.region
        self.image_item.setRect(QtCore.QRectF(x0, y0, x1 - x0, y1 - y0))
        if contours and np.isfinite(self.image).any():
            lines = contour_lines(shown, self.region, np.linspace(lo, hi, CONTOUR_LEVELS + 2)[1:-1])
        else:
            lines = np.zeros((0, 2)), np.zeros(0, bool)
        self.contour_item.set_lines(*lines)

    def set_title(self, text):
        if text != self.title:      # a new title lays the plot out again
            self.title = text
            self.plot.getPlotItem().setTitle(f"<span style='font-size:10pt'>{text}</span>")
