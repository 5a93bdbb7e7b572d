"""What the visualizer remembers between sessions: the window's size and docks, the
last view, and the display choices of `REMEMBERED` (a `MainWindow` mixin).

Values come back from `QSettings` as strings in an INI file; one the widget
cannot take (an unknown colour map, a number that does not parse or is outside the
control's range, a list such as a damaged file's `view=samples, density`) is ignored.
"""

from PySide6 import QtCore, QtWidgets

__all__ = ["RememberedUI", "REMEMBERED"]

#: Controls whose values are remembered between sessions: settings key -> (view, widget).
REMEMBERED = {
    "density/resolution": ("density", "resolution"), "density/scale": ("density", "scale"),
    "density/colours": ("density", "cmap"), "density/contours": ("density", "contours"),
    "samples/count": ("samples", "count"), "samples/temperature": ("samples", "temperature"),
    "layers/speed": ("layers", "speed"), "pairs/count": ("pairs", "count"),
}


def _widget_value(widget):
    if isinstance(widget, QtWidgets.QComboBox):
        return widget.currentText()
    if isinstance(widget, QtWidgets.QAbstractButton):
        return widget.isChecked()
    return widget.value()


def _set_widget_value(widget, value):
    """Sets a remembered value (as QSettings returns it, often a string); a value the
    widget cannot take (a list, bytes: a damaged file) is ignored."""
    if not isinstance(value, (str, int, float)):
        return
    try:
        if isinstance(widget, QtWidgets.QComboBox):
            index = widget.findText(str(value))
            if index >= 0:
                widget.setCurrentIndex(index)
        elif isinstance(widget, QtWidgets.QAbstractButton):
            widget.setChecked(str(value).lower() in ("true", "1"))
        elif isinstance(widget, (QtWidgets.QSpinBox, QtWidgets.QDoubleSpinBox)):
            number = (int if isinstance(widget, QtWidgets.QSpinBox) else float)(value)
            # one outside the widget's range (nan, inf, -4) is a damaged file, not a wish
            # for the nearest end: Qt would clamp it, and the window save it back
            if widget.minimum() <= number <= widget.maximum():
                widget.setValue(number)
        else:
            widget.setValue(float(value))
    except (TypeError, ValueError, OverflowError):
        pass


class RememberedUI:
    """`MainWindow` methods: `_restore_ui()` at construction, `save_ui()` on close."""

    def _remembered(self):
        for key, (view, name) in REMEMBERED.items():
            yield key, getattr(self.views[view], name)

    def _restore_ui(self):
        s = self.settings
        geometry = s.value("ui/geometry")
        if isinstance(geometry, QtCore.QByteArray):
            self.restoreGeometry(geometry)
        state = s.value("ui/state")
        if isinstance(state, QtCore.QByteArray):
            self.restoreState(state)
            for dock in (self.dock, self.context_dock):   # shown when a model needs them
                dock.hide()
        for key, widget in self._remembered():
            value = s.value(f"ui/{key}")
            if value is not None:
                _set_widget_value(widget, value)
        view = s.value("ui/view")
        if isinstance(view, str) and view in self.views:
            self.tabs.setCurrentWidget(self.views[view])

    def save_ui(self):
        """Stores the window's size, docks, current view and the `REMEMBERED` controls."""
        s = self.settings
        s.setValue("ui/geometry", self.saveGeometry())
        s.setValue("ui/state", self.saveState())
        s.setValue("ui/view", self.current_view().name)
        for key, widget in self._remembered():
            s.setValue(f"ui/{key}", _widget_value(widget))
        s.sync()
