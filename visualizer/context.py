"""The context panel: the values a conditional flow is shown at."""

import numpy as np
from PySide6 import QtCore, QtWidgets

__all__ = ["ContextPanel"]


#: Steps of a context slider over its range.
SLIDER_STEPS = 1000
#: A slider's range when the manifest gives none: the opening value +- this.
DEFAULT_HALF_RANGE = 3.0


class ContextPanel(QtWidgets.QWidget):
    """One labelled spin box and slider per context coordinate of a conditional flow.

    A slider spans the coordinate's range from the model folder's manifest
    (`context_range`, where the flow was trained) or the opening value +-
    `DEFAULT_HALF_RANGE`; dragging it moves the context live (the views ask for
    every new value, the compute thread answers the newest). The spin box
    takes any value, except for a coordinate with a step (the manifest's
    `context_step`, e.g. 1 for a class label): its spin box and slider move
    in that step, within the range.

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
        self.spins, self.sliders, self.ranges, self.steps = [], [], [], []

    def set_model(self, context, names=None, ranges=None, steps=None):
        """Rebuilds the controls for the context `[C]` a model opened with (`names`:
        one label per coordinate, default c1, c2, ...; `ranges`: `[low, high]` per
        coordinate for the sliders; `steps`: per coordinate, the step its values
        move by, or None for any value)."""
        self.default = np.asarray(context, np.float32).reshape(-1)
        names = names or [f"c{k + 1}" for k in range(len(self.default))]
        while self.form.rowCount():
            self.form.removeRow(0)
        self.spins, self.sliders, self.ranges, self.steps = [], [], [], []
        for k, value in enumerate(self.default):
            low, high = (ranges[k] if ranges else
                         (value - DEFAULT_HALF_RANGE, value + DEFAULT_HALF_RANGE))
            step = steps[k] if steps else None
            spin = QtWidgets.QDoubleSpinBox()
            slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
            if step is None:
                spin.setRange(-1e4, 1e4)
                spin.setDecimals(3)
                spin.setSingleStep(0.1)
                slider.setRange(0, SLIDER_STEPS)
            else:
                spin.setRange(low, high)
                spin.setDecimals(0 if float(step).is_integer() else 3)
                spin.setSingleStep(step)
                slider.setRange(0, int(round((high - low) / step)))
                slider.setPageStep(1)
            spin.setValue(float(value))
            slider.setToolTip(f"{names[k]} from {low:g} to {high:g}"
                              + (f" in steps of {step:g}" if step else "")
                              + (" (the range the flow was trained on)" if ranges else ""))
            self.spins.append(spin)
            self.sliders.append(slider)
            self.ranges.append((float(low), float(high)))
            self.steps.append(step)
            self._place_slider(k)
            spin.valueChanged.connect(lambda _, k=k: self._spin_moved(k))
            slider.valueChanged.connect(lambda step, k=k: self._slider_moved(k, step))
            row = QtWidgets.QWidget()
            line = QtWidgets.QVBoxLayout(row)
            line.setContentsMargins(0, 0, 0, 0)
            line.addWidget(spin)
            line.addWidget(slider)
            self.form.addRow(names[k], row)
        return self.context()

    def _place_slider(self, k):
        low, high = self.ranges[k]
        frac = (self.spins[k].value() - low) / (high - low) if high > low else 0.0
        self.sliders[k].blockSignals(True)
        self.sliders[k].setValue(int(round(min(max(frac, 0.0), 1.0)
                                           * self.sliders[k].maximum())))
        self.sliders[k].blockSignals(False)

    def _spin_moved(self, k):
        step, low = self.steps[k], self.ranges[k][0]
        value = self.spins[k].value()
        if step is not None and abs((value - low) / step - round((value - low) / step)) > 1e-6:
            self.spins[k].setValue(low + round((value - low) / step) * step)   # emits again
            return
        self._place_slider(k)
        self._emit()

    def _slider_moved(self, k, position):
        low, high = self.ranges[k]
        self.spins[k].setValue(low + (high - low) * position / self.sliders[k].maximum())

    def context(self):
        """The context the controls show, `[C]`."""
        return np.array([s.value() for s in self.spins], np.float32)

    def set_value(self, k, value):
        self.spins[k].setValue(value)

    def _emit(self, *args):
        self.changed.emit(self.context())

    def _reset(self):
        for k, (spin, value) in enumerate(zip(self.spins, self.default)):
            spin.blockSignals(True)
            spin.setValue(float(value))
            spin.blockSignals(False)
            self._place_slider(k)
        self._emit()
