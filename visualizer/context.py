"""The context panel: the values a conditional flow is shown at."""

import numpy as np
from PySide6 import QtCore, QtWidgets

__all__ = ["ContextPanel"]


class ContextPanel(QtWidgets.QWidget):
    """One labelled spin box per context coordinate of a conditional flow.

    Every view shows the flow at this one context: samples of `p(x | c)`,
    the density `log p(x | c)`, the layers' maps and the inspector's numbers.

    Signals:
        changed(np.ndarray): the context `[C]` after the user changed a value.
    """

    changed = QtCore.Signal(object)

    def __init__(self):
        super().__init__()
        self.default = np.zeros(0, np.float32)
        self.values = QtWidgets.QWidget()
        self.form = QtWidgets.QFormLayout(self.values)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.values)
        note = QtWidgets.QLabel("This flow is conditional: every view shows it at this "
                                "context c (p(x | c)).")
        note.setWordWrap(True)
        self.reset = QtWidgets.QPushButton("Reset to the opening context")
        self.reset.clicked.connect(self._reset)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(note)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.reset)
        self.spins = []

    def set_model(self, context, names=None):
        """Rebuilds the controls for the context `[C]` a model opened with (`names`:
        one label per coordinate; default c1, c2, ...)."""
        self.default = np.asarray(context, np.float32).reshape(-1)
        names = names or [f"c{k + 1}" for k in range(len(self.default))]
        while self.form.rowCount():
            self.form.removeRow(0)
        self.spins = []
        for k, value in enumerate(self.default):
            spin = QtWidgets.QDoubleSpinBox()
            spin.setRange(-1e4, 1e4)
            spin.setDecimals(3)
            spin.setSingleStep(0.1)
            spin.setValue(float(value))
            spin.valueChanged.connect(self._emit)
            self.form.addRow(names[k], spin)
            self.spins.append(spin)
        return self.context()

    def context(self):
        """The context the controls show, `[C]`."""
        return np.array([s.value() for s in self.spins], np.float32)

    def set_value(self, k, value):
        self.spins[k].setValue(value)

    def _emit(self, *args):
        self.changed.emit(self.context())

    def _reset(self):
        for spin, value in zip(self.spins, self.default):
            spin.blockSignals(True)
            spin.setValue(float(value))
            spin.blockSignals(False)
        self._emit()
