"""Keys that belong to one view (a `MainWindow` mixin).

Layers ▸ Previous / Next layer and Play / Pause (`[`, `]`, `PgUp`, `PgDn`,
`Space`) act on the Layers view, Samples ▸ Resample (`R`) on the Samples
view and Samples ▸ Resample Pairs (`R`) on the Pairs view: their actions are
enabled only while that view is shown with a model open, so elsewhere the
keys do nothing to a hidden view and reach the focused control as usual. Even
then, a focused control that acts on the key itself keeps it: a check box,
button or list toggles on Space, a spin box or slider steps on Page Up /
Page Down; but not the Layers view's own slider (dragged, it takes the
focus), where Page Up is Previous layer still (QSlider moves right on Page Up).
"""

from PySide6 import QtCore, QtWidgets

__all__ = ["ViewKeys", "KEY_USERS", "uses_key"]

Key = QtCore.Qt.Key
_LISTS_AND_TEXT = (QtWidgets.QAbstractItemView, QtWidgets.QTextEdit, QtWidgets.QPlainTextEdit)
#: The keys a focused control of these types acts on itself (a shortcut must not take them).
KEY_USERS = {
    Key.Key_Space: (QtWidgets.QAbstractButton, QtWidgets.QComboBox, QtWidgets.QAbstractSpinBox,
                    QtWidgets.QLineEdit, *_LISTS_AND_TEXT),
    Key.Key_PageUp: (QtWidgets.QAbstractSpinBox, QtWidgets.QAbstractSlider, *_LISTS_AND_TEXT),
    Key.Key_PageDown: (QtWidgets.QAbstractSpinBox, QtWidgets.QAbstractSlider, *_LISTS_AND_TEXT),
}


def uses_key(widget, key, modifiers=QtCore.Qt.KeyboardModifier.NoModifier):
    """True when `widget` (the focused one) acts on the unmodified `key` itself."""
    if widget is None or modifiers & ~QtCore.Qt.KeyboardModifier.KeypadModifier:
        return False
    return isinstance(widget, KEY_USERS.get(int(key), ()))


class ViewKeys:
    """`MainWindow` methods: `_view_action(view, ...)` makes a menu action that belongs to
    one view; `_update_view_actions()` (on a tab change or a model opened) enables those
    of the view shown."""

    def _view_action(self, view, menu, text, slot, shortcuts):
        action = self._action(menu, text, slot, shortcuts)
        action.setEnabled(False)                # until a model is open and `view` shown
        self._view_actions.setdefault(view, []).append(action)
        return action

    def _update_view_actions(self):
        shown = self.current_view().name if self.info is not None else None
        for view, actions in self._view_actions.items():
            for action in actions:
                action.setEnabled(view == shown)

    def _keeps_key(self, widget, event):
        """True when the focused `widget` keeps `event`'s key (`uses_key`); the Layers
        slider leaves Page Up / Page Down to Previous / Next layer."""
        if (widget is self.views["layers"].slider
                and event.key() in (Key.Key_PageUp, Key.Key_PageDown)):
            return False
        return uses_key(widget, event.key(), event.modifiers())

    def event(self, event):
        # Before a shortcut fires, Qt offers its key to the focused widget and then its
        # parents up to this window: accepting the offer here gives the key to the widget.
        if (event.type() == QtCore.QEvent.Type.ShortcutOverride
                and self._keeps_key(QtWidgets.QApplication.focusWidget(), event)):
            event.accept()
            return True
        return super().event(event)
