"""The context panel: the values a conditional flow is shown at."""

import numpy as np
from PySide6 import QtCore, QtWidgets

from visualizer.geometry import stepped_values
from visualizer.spin_boxes import fit_spin_box, step_decimals

__all__ = ["ContextPanel"]


#: Steps of a context slider over its range.
SLIDER_STEPS = 1000
#: A slider's range when the manifest gives none: the opening value +- this.
DEFAULT_HALF_RANGE = 3.0
#: Context coordinates the panel asks room for (more scroll).
MAX_ROWS_SHOWN = 4
#: Playing a coordinate: ticks from one end of a continuous range to the other, and the
#: milliseconds between ticks (continuous; one step of a stepped coordinate).
PLAY_TICKS, PLAY_MS, PLAY_STEP_MS = 100, 60, 700


class ContextPanel(QtWidgets.QWidget):
    """One labelled spin box and slider per context coordinate of a conditional flow.

    A slider spans the coordinate's range from the model folder's manifest
    (`context_range`, where the flow was trained) or the opening value +-
    `DEFAULT_HALF_RANGE`; dragging it moves the context live (the views ask for
    every new value, the compute thread answers the newest). The spin box
    takes any value (within +-`SPIN_LIMIT`, or out to the opening value, with
    the decimals it needs: `spin_boxes.fit_spin_box`), except
    for a coordinate with a step (the manifest's `context_step`, e.g. 1 for a
    class label): its spin box and slider move in that step, within the range
    (`compute.load` refuses to open a flow at a context off those steps).
    Each coordinate's play button (▶) sweeps it back and forth across its
    range, and every view follows (the compute thread answers the newest
    context): a ring growing with its radius, the digits from 0 to 9.

    Every view shows the flow at this one context: samples of `p(x | c)`,
    the density `log p(x | c)`, the layers' maps and the inspector's numbers.
    A value outside the range the flow was trained on (its slider pinned at
    an end) is allowed, with a warning under the controls (`outside_text`).

    Signals:
        changed(np.ndarray): the context `[C]` after the user changed a value.
    """

    changed = QtCore.Signal(object)

    def __init__(self):
        super().__init__()
        self.default = np.zeros(0, np.float32)
        self.values = QtWidgets.QWidget()
        self.form = QtWidgets.QFormLayout(self.values)
        self.scroll = scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.values)
        note = QtWidgets.QLabel("This flow is conditional: every view shows it at this "
                                "context c (p(x | c)).")
        note.setWordWrap(True)
        self.warning = QtWidgets.QLabel("")
        self.warning.setObjectName("warning")
        self.warning.setWordWrap(True)
        self.warning.hide()
        self.reset = QtWidgets.QPushButton("Reset to the opening context")
        self.reset.clicked.connect(self._reset)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(note)
        layout.addWidget(self.warning)
        layout.addWidget(scroll)
        layout.addWidget(self.reset)
        self.spins, self.sliders, self.ranges, self.steps, self.plays = [], [], [], [], []
        self.names, self.trained = [], False
        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self.tick)
        self.playing, self._direction = None, 1

    def set_model(self, context, names=None, ranges=None, steps=None):
        """Rebuilds the controls for the context `[C]` a model opened with (`names`:
        one label per coordinate, default c1, c2, ...; `ranges`: `[low, high]` per
        coordinate for the sliders; `steps`: per coordinate, the step its values
        move by, or None for any value)."""
        self.stop()
        self.default = np.asarray(context, np.float32).reshape(-1)
        names = names or [f"c{k + 1}" for k in range(len(self.default))]
        while self.form.rowCount():
            self.form.removeRow(0)
        self.spins, self.sliders, self.ranges, self.steps, self.plays = [], [], [], [], []
        self.names, self.trained = list(names), bool(ranges)
        for k, value in enumerate(self.default):
            low, high = (ranges[k] if ranges else
                         (value - DEFAULT_HALF_RANGE, value + DEFAULT_HALF_RANGE))
            self._add_row(k, value, names[k], (float(low), float(high)),
                          steps[k] if steps else None, trained=bool(ranges))
        self._warn()
        # Room for the rows (up to MAX_ROWS_SHOWN of them), so the panel asks for the
        # height they need when it shares the side with Dimensions shown.
        shown = self.form.rowCount() and min(self.form.rowCount(), MAX_ROWS_SHOWN)
        rows = sum(self.form.itemAt(k, QtWidgets.QFormLayout.ItemRole.FieldRole)
                   .widget().sizeHint().height() for k in range(shown))
        margins = self.form.contentsMargins()
        self.scroll.setMinimumHeight(rows + max(shown - 1, 0) * self.form.verticalSpacing()
                                     + margins.top() + margins.bottom()
                                     + 2 * self.scroll.frameWidth())
        return self.context()

    def _add_row(self, k, value, name, span, step, trained):
        """The spin box, slider and play button of coordinate `k`."""
        low, high = span
        spin = QtWidgets.QDoubleSpinBox()
        slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        if step is None:
            fit_spin_box(spin, value)
            spin.setSingleStep(0.1)
            slider.setRange(0, SLIDER_STEPS)
        else:
            values = stepped_values(low, high, step)        # to the last step inside
            spin.setDecimals(step_decimals(low, step))      # before the range it rounds
            spin.setRange(low, values[-1])
            spin.setSingleStep(step)
            slider.setRange(0, len(values) - 1)
            slider.setPageStep(1)
        spin.setValue(float(value))
        slider.setToolTip(f"{name} from {low:g} to {high:g}"
                          + (f" in steps of {step:g}" if step else "")
                          + (" (the range the flow was trained on)" if trained else ""))
        play = QtWidgets.QToolButton()
        play.setText("▶")
        play.setCheckable(True)
        play.setToolTip(f"Play {name}: sweep it back and forth from {low:g} to {high:g}; "
                        "every view follows")
        self.spins.append(spin)
        self.sliders.append(slider)
        self.ranges.append(span)
        self.steps.append(step)
        self.plays.append(play)
        self._place_slider(k)
        spin.valueChanged.connect(lambda _, k=k: self._spin_moved(k))
        slider.valueChanged.connect(lambda position, k=k: self._slider_moved(k, position))
        play.toggled.connect(lambda on, k=k: self.play(k) if on else self.stop())
        row = QtWidgets.QWidget()
        lines = QtWidgets.QVBoxLayout(row)
        lines.setContentsMargins(0, 0, 0, 0)
        lines.addWidget(spin)
        below = QtWidgets.QHBoxLayout()
        below.addWidget(slider, 1)
        below.addWidget(play)
        lines.addLayout(below)
        self.form.addRow(name, row)

    def play(self, k):
        """Sweeps coordinate `k` back and forth across its range (`tick` by `tick`)."""
        self.stop()
        self.playing = k
        self._show_playing(k, True)
        self.timer.start(PLAY_MS if self.steps[k] is None else PLAY_STEP_MS)

    def stop(self):
        """Stops playing."""
        self.timer.stop()
        if self.playing is not None and self.playing < len(self.plays):
            self._show_playing(self.playing, False)
        self.playing = None

    def _show_playing(self, k, on):
        """Coordinate `k`'s play button as playing (⏸, pressed) or not (▶), silently."""
        button = self.plays[k]
        button.blockSignals(True)
        button.setChecked(on)
        button.blockSignals(False)
        button.setText("⏸" if on else "▶")

    def tick(self):
        """Moves the playing coordinate one tick on, turning back at either end."""
        if self.playing is None:
            return
        slider = self.sliders[self.playing]
        stride = 1 if self.steps[self.playing] else max(1, slider.maximum() // PLAY_TICKS)
        position = slider.value() + self._direction * stride
        if not 0 <= position <= slider.maximum():        # an end: turn back
            self._direction = -self._direction
            position = slider.value() + self._direction * stride
        slider.setValue(min(max(position, 0), slider.maximum()))     # emits the context

    def _place_slider(self, k):
        low, high = self.ranges[k]
        if self.steps[k] is not None:
            position = self._position(k)
        else:
            frac = (self.spins[k].value() - low) / (high - low) if high > low else 0.0
            position = int(round(min(max(frac, 0.0), 1.0) * self.sliders[k].maximum()))
        self.sliders[k].blockSignals(True)
        self.sliders[k].setValue(position)
        self.sliders[k].blockSignals(False)

    def _position(self, k):
        """The slider position (the step) nearest stepped coordinate `k`'s box."""
        low, step = self.ranges[k][0], self.steps[k]
        position = round((self.spins[k].value() - low) / step)
        return min(max(position, 0), self.sliders[k].maximum())

    def _value_at(self, k, position):
        """Coordinate `k`'s value at slider `position`: its `position`-th step from the
        low end for a stepped coordinate, else that fraction of its range."""
        (low, high), step = self.ranges[k], self.steps[k]
        if step is not None:
            return low + position * step
        return low + (high - low) * position / self.sliders[k].maximum()

    def _spin_moved(self, k):
        spin, step = self.spins[k], self.steps[k]
        if step is not None:
            value = spin.value()
            on_step = self._value_at(k, self._position(k))
            # off its steps by more than the box's decimals round (a step of 1/3 shows
            # as 0.333333): snap to the nearest, whose valueChanged emits; a box that
            # cannot show the step otherwise (it did not move) emits here
            if abs(value - on_step) > 0.5 * 10.0 ** -spin.decimals() * (1 + 1e-6):
                spin.setValue(on_step)
                if spin.value() != value:
                    return
        self._place_slider(k)
        self._emit()

    def _slider_moved(self, k, position):
        self.spins[k].setValue(self._value_at(k, position))

    def context(self):
        """The context the controls show, `[C]`: a stepped coordinate's exact step (its
        box shows it rounded to its decimals: 1/3 as 0.333333)."""
        return np.array([self._value_at(k, self._position(k)) if self.steps[k] is not None
                         else spin.value() for k, spin in enumerate(self.spins)], np.float32)

    def set_value(self, k, value):
        self.spins[k].setValue(value)

    def outside_text(self):
        """A warning naming each coordinate whose value lies outside the range the flow
        was trained on (the manifest's `context_range`), or "" (all inside, or no
        trained range known)."""
        if not self.trained:
            return ""
        # (the values sent, a step's exact one: its box shows it rounded, 0.123456 for
        # 0.1234564, which was called outside a range starting there)
        outside = [f"{name} = {value:g}" + f" (trained on {low:g} to {high:g})"
                   for name, value, (low, high) in zip(self.names, self.context().tolist(),
                                                       self.ranges)
                   if not np.float32(low) <= value <= np.float32(high)]
        if not outside:
            return ""
        return (f"Outside the range the flow was trained on: {'; '.join(outside)}. What is "
                "drawn there is extrapolation.")

    def _warn(self):
        text = self.outside_text()
        self.warning.setText(text)
        self.warning.setVisible(bool(text))

    def _emit(self, *args):
        self._warn()
        self.changed.emit(self.context())

    def _reset(self):
        for k, (spin, value) in enumerate(zip(self.spins, self.default)):
            spin.blockSignals(True)
            spin.setValue(float(value))
            spin.blockSignals(False)
            self._place_slider(k)
        self._emit()
