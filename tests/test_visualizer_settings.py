"""The visualizer remembers its window and the user's display choices between
sessions (and screenshots / benchmarks neither read nor change them); Help
lists every shortcut and the versions (pytest-qt, offscreen; no model, no
TensorFlow)."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import PySide6  # noqa: E402
import pytest  # noqa: E402
from PySide6 import QtCore  # noqa: E402

import kerasflows  # noqa: E402
from visualizer.views import density, samples  # noqa: E402
from visualizer.preferences import REMEMBERED  # noqa: E402
from visualizer.window import MainWindow  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def settings(tmp_path):
    return QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat)


def _window(qtbot, settings, **kwargs):
    w = MainWindow(settings=settings, **kwargs)
    qtbot.addWidget(w)
    w.show()
    return w


def _choose(w):
    w.resize(760, 560)                               # inside the offscreen screen (800x600)
    w.show_view("layers")
    d, s = w.views["density"], w.views["samples"]
    d.resolution.setCurrentIndex(1)                  # 128 x 128
    d.scale.setCurrentIndex(1)                       # p(x)
    d.cmap.setCurrentText("magma")
    d.contours.setChecked(True)
    s.count.setValue(5000)
    s.temperature.setValue(0.8)
    w.views["layers"].speed.setValue(2.5)
    w.views["pairs"].count.setValue(3000)


def _choices(w):
    d, s = w.views["density"], w.views["samples"]
    return (w.current_view().name, d.resolution.currentData(), d.scale.currentIndex(),
            d.cmap.currentText(), d.contours.isChecked(), s.count.value(),
            round(s.temperature.value(), 3), round(w.views["layers"].speed.value(), 3),
            w.views["pairs"].count.value())


CHOSEN = ("layers", 128, 1, "magma", True, 5000, 0.8, 2.5, 3000)
DEFAULTS = ("samples", density.DEFAULT_RESOLUTION, 0, "viridis", False, samples.DEFAULT_COUNT,
            1.0, 1.0, samples.DEFAULT_COUNT)


def test_window_size_view_and_display_choices_are_remembered(qtbot, settings):
    first = _window(qtbot, settings)
    assert _choices(first) == DEFAULTS
    _choose(first)
    size = (first.width(), first.height())
    assert size != (1280, 840) and size[1] == 560     # (at least the controls' width)
    first.close()
    second = _window(qtbot, settings)
    assert _choices(second) == CHOSEN
    assert (second.width(), second.height()) == size
    assert not second.dock.isVisible() and not second.context_dock.isVisible()
    assert {k.split("/")[0] for k in REMEMBERED} == {"density", "samples", "layers", "pairs"}


def test_screenshot_and_benchmark_windows_neither_read_nor_change_the_choices(qtbot, settings):
    first = _window(qtbot, settings)
    _choose(first)
    first.close()
    plain = _window(qtbot, settings, remember=False)
    assert _choices(plain) == DEFAULTS
    plain.views["samples"].count.setValue(300)
    plain.close()
    again = _window(qtbot, settings)
    assert _choices(again) == CHOSEN


def test_unusable_remembered_values_are_ignored(qtbot, settings):
    settings.setValue("ui/samples/count", "lots")
    settings.setValue("ui/density/colours", "no-such-map")
    settings.setValue("ui/density/resolution", "7 × 7")
    settings.setValue("ui/layers/speed", "")
    settings.setValue("ui/view", "nowhere")
    settings.setValue("ui/geometry", "not bytes")
    w = _window(qtbot, settings)
    assert _choices(w) == DEFAULTS
    w.close()
    # numbers outside a control's range: Qt clamped them (temperature nan -> 3, the
    # largest) and the window saved that back
    for key, value in (("ui/samples/temperature", "nan"), ("ui/layers/speed", "inf"),
                       ("ui/samples/count", "-4")):
        settings.setValue(key, value)
    settings.setValue("recent", ["", None, 3])
    w = _window(qtbot, settings)
    assert _choices(w) == DEFAULTS
    assert w._recent() == [] and not w.recent_menu.isEnabled()


def test_a_remembered_value_read_as_a_list_is_ignored(qtbot, tmp_path):
    # a damaged file's `view=samples, density` reads as a list, which stopped the start
    ini = tmp_path / "damaged.ini"
    ini.write_text("[ui]\nview=layers, density\ndensity\\contours=true, false\n"
                   "samples\\count=1, 2\n")
    settings = QtCore.QSettings(str(ini), QtCore.QSettings.Format.IniFormat)
    assert isinstance(settings.value("ui/view"), list)
    w = _window(qtbot, settings)
    assert _choices(w) == DEFAULTS
    settings.setValue("ui/density/contours", "true")       # a usable one is still taken
    w = _window(qtbot, settings)
    assert w.views["density"].contours.isChecked()


def test_recent_files_of_another_window_are_kept(qtbot, tmp_path):
    # another kerasflows-viz process writes the same settings file meanwhile
    ini = tmp_path / "shared.ini"
    w = _window(qtbot, QtCore.QSettings(str(ini), QtCore.QSettings.Format.IniFormat))
    w._remember("/models/X")
    assert "/models/X" in ini.read_text()
    ini.write_text("[General]\nrecent=/models/Y, /models/X\n")   # the other opened Y
    w.recent_menu.aboutToShow.emit()
    assert [a.text() for a in w.recent_menu.actions()] == ["/models/Y", "/models/X"]
    w._remember("/models/Z")
    assert w._recent() == ["/models/Z", "/models/Y", "/models/X"]
    again = QtCore.QSettings(str(ini), QtCore.QSettings.Format.IniFormat)
    assert again.value("recent") == ["/models/Z", "/models/Y", "/models/X"]


def test_open_recent_shows_an_ampersand_in_a_path(qtbot, settings, monkeypatch):
    w = _window(qtbot, settings)
    opened = []
    monkeypatch.setattr(w, "open_path", opened.append)
    w._remember("/home/me/R&D/flow.keras")
    w._remember("/home/me/Tom && Jerry/flow.keras")
    actions = w.recent_menu.actions()
    # (a single & would mark the next letter as the shortcut and not be shown)
    assert [a.text() for a in actions] == ["/home/me/Tom &&&& Jerry/flow.keras",
                                           "/home/me/R&&D/flow.keras"]
    for action in actions:
        action.trigger()
    assert opened == ["/home/me/Tom && Jerry/flow.keras", "/home/me/R&D/flow.keras"]


def _drag_and_drop(w, url):
    """Drags `url` onto the window and drops it there; returns whether the drag and
    the drop were accepted."""
    from PySide6 import QtGui, QtWidgets
    mime = QtCore.QMimeData()
    mime.setUrls([url])
    at = QtCore.QPoint(w.width() // 2, w.height() // 2)
    buttons, keys = QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier
    enter = QtGui.QDragEnterEvent(at, QtCore.Qt.DropAction.CopyAction, mime, buttons, keys)
    QtWidgets.QApplication.sendEvent(w, enter)
    drop = QtGui.QDropEvent(QtCore.QPointF(at), QtCore.Qt.DropAction.CopyAction, mime,
                            buttons, keys)
    QtWidgets.QApplication.sendEvent(w, drop)
    return enter.isAccepted(), drop.isAccepted()


def test_only_local_files_can_be_dropped(qtbot, settings, monkeypatch, tmp_path):
    w = _window(qtbot, settings)
    opened = []
    monkeypatch.setattr(w, "open_path", opened.append)
    for url in ("https://example.com/flow.keras", "sftp://host/m/flow.keras"):
        assert _drag_and_drop(w, QtCore.QUrl(url)) == (False, False), url
    assert opened == []
    model = tmp_path / "m.keras"
    assert _drag_and_drop(w, QtCore.QUrl.fromLocalFile(str(model))) == (True, True)
    assert opened == [str(model)]


def test_help_lists_every_shortcut_and_the_versions(qtbot, settings):
    w = _window(qtbot, settings)
    shortcuts = {(menu, action): keys for menu, action, keys in w.shortcuts()}
    assert shortcuts[("File", "Open")] == ["Ctrl+O"]
    assert shortcuts[("File", "Follow File Changes")] == ["Ctrl+Shift+R"]
    assert shortcuts[("Layers", "Play / Pause")] == ["Space"]
    assert shortcuts[("Layers", "Previous layer")] == ["[", "Page Up"]
    assert shortcuts[("Layers", "Next layer")] == ["]", "Page Down"]
    assert shortcuts[("Help", "Keyboard Shortcuts")] == ["F1"]
    assert shortcuts[("Samples", "Resample Pairs")] == ["R"]
    assert shortcuts[("View", "Pairs")] == ["Ctrl+5"]
    assert len(shortcuts) >= 12
    w.show_shortcuts()
    assert w.info_box.isVisible()
    text = w.info_box.text()
    assert all(keys[0] in text for keys in shortcuts.values())
    w.info_box.close()
    w.show_about()
    assert f"kerasflows {kerasflows.__version__}" in w.info_box.text()
    assert f"PySide6 {PySide6.__version__}" in w.info_box.text()
    assert "no model open" in w.info_box.text()
    assert "Compiled code kept in: nowhere (cache off)" in w.info_box.text()
    w.info_box.close()


def test_exporting_data_before_anything_is_drawn_says_so(qtbot, settings, tmp_path):
    w = _window(qtbot, settings)
    assert w.view_data() is None and not w.save_view_data(tmp_path / "x.npz")
    with qtbot.waitSignal(w.failed, timeout=5000) as blocker:
        w.export_data_dialog()
    assert "Nothing to export" in blocker.args[0]
    w.error_box.close()
    assert not (tmp_path / "x.npz").exists()


def test_view_keys_do_nothing_while_no_model_is_open(qtbot, settings):
    w = _window(qtbot, settings)
    layers = w.show_view("layers")
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=5000)
    layers.plot.setFocus()
    for key in (QtCore.Qt.Key.Key_Space, QtCore.Qt.Key.Key_BracketRight, QtCore.Qt.Key.Key_R):
        qtbot.keyClick(layers.plot, key)
    assert not layers.play_button.isChecked() and not layers.timer.isActive()
    assert w.views["samples"].seed == 0


def test_status_text_too_long_for_its_place_ends_in_an_ellipsis(qtbot):
    from PySide6 import QtWidgets
    from visualizer.views.base import ElidedLabel
    box = QtWidgets.QWidget()
    qtbot.addWidget(box)
    row = QtWidgets.QHBoxLayout(box)
    row.addWidget(QtWidgets.QLabel("a control"))
    label = ElidedLabel("")
    label.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight)
    row.addWidget(label, 1)
    text = "seed 12 · T = 1.00 · the first 100 of 10,000 samples, 8×8 pixels"
    label.setText(text)
    box.resize(700, 40)
    box.show()
    qtbot.waitExposed(box)
    assert label.shown_text() == text and label.toolTip() == ""
    box.resize(260, 40)                         # too narrow: cut at the right, not the left
    qtbot.waitUntil(lambda: label.width() < 200, timeout=5000)
    shown = label.shown_text()
    assert shown.endswith("…") and text.startswith(shown[:-1]) and len(shown) > 5
    assert label.fontMetrics().horizontalAdvance(shown) <= label.contentsRect().width()
    assert label.text() == text and label.toolTip() == text
    assert label.sizeHint().width() > label.width()       # it gave up width, not widened
