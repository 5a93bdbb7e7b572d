"""The projection panel: which two coordinates a D > 2 flow is shown in, and
the values the other coordinates are held at."""

import numpy as np
from PySide6 import QtCore, QtWidgets

from visualizer.geometry import Projection
from visualizer.spin_boxes import exact_value, set_exact

__all__ = ["ProjectionPanel"]

#: Held values the panel always has room for.
MIN_ROWS_SHOWN = 3
#: The panel's note for a view that draws at the held values, and for one that does not.
HELD_NOTE = ("Coordinates not shown are held fixed at these values (in data space; the "
             "base-space layer view holds them at the base mean):")
NOT_HELD_NOTE = ("This view draws every sample's two chosen coordinates, whatever the others "
                 "(a projection, not a slice); the other views hold them at these values:")


class ProjectionPanel(QtWidgets.QWidget):
    """Two coordinate pickers and one labelled spin box per held coordinate.

    Picking for one axis the coordinate the other axis shows swaps the two axes
    (the pickers always name two different coordinates, the ones drawn).

    Signals:
        changed(Projection): the user picked other coordinates or values.
    """

    changed = QtCore.Signal(object)

    def __init__(self):
        super().__init__()
        self.event_dim = 0
        self.names = []
        self.default = None
        self._building = False
        self._dims = (0, 1)         # the coordinates shown (what the pickers read)
        self.x_dim, self.y_dim = QtWidgets.QComboBox(), QtWidgets.QComboBox()
        form = QtWidgets.QFormLayout()
        form.addRow("horizontal axis", self.x_dim)
        form.addRow("vertical axis", self.y_dim)
        self.reset = QtWidgets.QPushButton("Hold at data mean")
        self.note = note = QtWidgets.QLabel(HELD_NOTE)
        note.setWordWrap(True)
        self.values = QtWidgets.QWidget()
        self.value_form = QtWidgets.QFormLayout(self.values)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.values)
        # The values fit the dock's width; they scroll up and down only, and at least
        # MIN_ROWS_SHOWN rows show however the side is shared with the Context dock.
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumHeight(MIN_ROWS_SHOWN * QtWidgets.QDoubleSpinBox().sizeHint().height())
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.reset)
        self.spins = []
        self.x_dim.currentIndexChanged.connect(lambda d: self._picked(0, d))
        self.y_dim.currentIndexChanged.connect(lambda d: self._picked(1, d))
        self.reset.clicked.connect(self._reset)

    def set_model(self, event_dim, default_values, names=None, dims=(0, 1)):
        """Rebuilds the controls for a `event_dim`-dimensional flow whose coordinates
        go by `names` (the data's column names) when given, else x1, x2, ...,
        showing coordinates `dims` first."""
        self.event_dim = event_dim
        self.names = list(names) if names else [f"x{d + 1}" for d in range(event_dim)]
        self.default = np.asarray(default_values, np.float32)
        self._building = True
        for box in (self.x_dim, self.y_dim):
            box.clear()
            box.addItems(self.names)
        self.x_dim.setCurrentIndex(dims[0])
        self.y_dim.setCurrentIndex(dims[1])
        self._dims = tuple(dims)
        while self.value_form.rowCount():
            self.value_form.removeRow(0)
        self.spins = []
        for d in range(event_dim):
            spin = QtWidgets.QDoubleSpinBox()
            spin.setSingleStep(0.1)
            set_exact(spin, self.default[d])
            spin.valueChanged.connect(self._emit)
            self.value_form.addRow(f"{self.names[d]} held at", spin)
            self.spins.append(spin)
        self._building = False
        self._enable()
        return self.projection()

    def projection(self):
        held = np.array([exact_value(s) for s in self.spins], np.float32)
        return Projection(self.event_dim, self._dims, held)

    def set_dims(self, x, y):
        """Shows coordinates `x` and `y` (different) on the two axes."""
        if x == y:
            raise ValueError(f"the two axes need different coordinates; received {x} and {y}.")
        self._show_dims((x, y))
        self._emit()

    def _show_dims(self, dims):
        """Sets both pickers to `dims`, silently."""
        self._dims = tuple(dims)
        for box, d in zip((self.x_dim, self.y_dim), dims):
            box.blockSignals(True)
            box.setCurrentIndex(d)
            box.blockSignals(False)

    def _picked(self, axis, d):
        """The user picked coordinate `d` for `axis` (0: horizontal): the one the other
        axis showed moves to it (a swap), so two different coordinates stay shown."""
        if self._building or d < 0:
            return
        dims = list(self._dims)
        if dims[1 - axis] == d:
            dims[1 - axis] = dims[axis]
        dims[axis] = d
        self._show_dims(dims)
        self._emit()

    def set_holds(self, holds):
        """Whether the view shown draws at the held values (`View.holds_values`): the
        Samples view, a scatter of every sample's two coordinates, does not, and the
        values are greyed out with a note saying so while it is shown."""
        self.note.setText(HELD_NOTE if holds else NOT_HELD_NOTE)
        self.values.setEnabled(holds)
        self.reset.setEnabled(holds)

    def set_held(self, d, value):
        if set_exact(self.spins[d], value):
            self._emit()

    def _enable(self):
        shown = self._dims
        for d, spin in enumerate(self.spins):
            spin.setEnabled(d not in shown)
            label = self.value_form.labelForField(spin)
            if label is not None:
                label.setText(f"{self.names[d]} " + ("shown" if d in shown else "held at"))

    def _emit(self, *args):
        if self._building or self.event_dim < 2:
            return
        self._enable()
        self.changed.emit(self.projection())

    def _reset(self):
        for spin, v in zip(self.spins, self.default):
            set_exact(spin, v)
        self._emit()
