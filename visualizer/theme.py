"""The app's look: a dark Fusion palette, pyqtgraph defaults and named colours."""

import numpy as np
import pyqtgraph as pg
from PySide6 import QtGui, QtWidgets

__all__ = ["apply", "COLORS", "COLORMAPS", "GREY", "pen", "color"]

COLORS = {
    "window": "#1f2227", "panel": "#272b31", "base": "#16181c", "text": "#e3e6ea",
    "muted": "#9aa3ad", "accent": "#4fc3f7", "samples": "#ffb74d", "data": "#90a4ae",
    "grid": "#4fc3f7", "contour": "#ffffff", "marker": "#ff5252", "path": "#ffd54f",
    "error": "#ff8a80",
}
COLORMAPS = ("viridis", "inferno", "magma", "plasma", "cividis")
#: Grey levels, black to white (pictures of image-shaped flows).
GREY = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)


def color(name, alpha=255):
    c = QtGui.QColor(COLORS[name])
    c.setAlpha(alpha)
    return c


def pen(name, width=1.0, alpha=255):
    p = pg.mkPen(color(name, alpha), width=width)
    p.setCosmetic(True)
    return p


def _palette():
    pal = QtGui.QPalette()
    roles = QtGui.QPalette.ColorRole
    for role, key in [(roles.Window, "window"), (roles.Base, "base"),
                      (roles.AlternateBase, "panel"), (roles.Button, "panel"),
                      (roles.ToolTipBase, "panel"), (roles.WindowText, "text"),
                      (roles.Text, "text"), (roles.ButtonText, "text"),
                      (roles.ToolTipText, "text"), (roles.Highlight, "accent")]:
        pal.setColor(role, color(key))
    pal.setColor(roles.HighlightedText, QtGui.QColor("#000000"))
    pal.setColor(QtGui.QPalette.ColorGroup.Disabled, roles.Text, color("muted"))
    pal.setColor(QtGui.QPalette.ColorGroup.Disabled, roles.ButtonText, color("muted"))
    return pal


def apply(app):
    """Applies the theme to a `QApplication` and sets pyqtgraph's options (OpenGL off)."""
    pg.setConfigOptions(antialias=True, useOpenGL=False, background=COLORS["base"],
                        foreground=COLORS["text"], imageAxisOrder="row-major")
    app.setStyle(QtWidgets.QStyleFactory.create("Fusion"))
    app.setPalette(_palette())
    app.setStyleSheet(
        "QStatusBar QLabel { padding: 0 8px; } "
        "QTabBar::tab { padding: 6px 16px; } "
        f"QLabel#message {{ color: {COLORS['error']}; font-size: 15px; padding: 2px 8px; }} "
        f"QLabel#note {{ color: {COLORS['muted']}; padding: 2px 8px; }} "
        f"QLabel#warning {{ color: {COLORS['error']}; }}")
