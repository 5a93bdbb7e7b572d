"""The visualizer window fed with made-up models and results (pytest-qt, offscreen;
the compute thread is never started, so no TensorFlow): the right heatmap
follows the left one's range, following resumes after a failed open, held
values and contour lines are where they should be, a context animation
finishes in continuous mode, stops a playing coordinate and can be cancelled
while it waits, recent files are absolute, a layer trace of the other
direction is not drawn, exports name the context and direction their arrays
were computed in, Previous / Next layer step to the state on their side, and
the File actions that need a model are off without one."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PySide6 import QtCore, QtWidgets  # noqa: E402

from visualizer import animation, geometry, paths, theme  # noqa: E402
from visualizer.items import contour_lines  # noqa: E402
from visualizer.projection import ProjectionPanel  # noqa: E402
from visualizer.window import MainWindow  # noqa: E402
from visualizer.worker import Result  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def themed_app(qapp):
    """The application with the visualizer's theme, applied once, as the program
    applies it: `theme.apply` restyles every widget alive, and each test's closed
    window lingers until collected: applied before each test, it took up to 2 s a
    test by the end of a run."""
    theme.apply(qapp)
    return qapp


@pytest.fixture
def window(qtbot, themed_app, tmp_path):
    """A shown `MainWindow` whose compute thread never starts: what it submits stays
    queued, and the tests answer it (`submitted`: every request, in order)."""
    settings = QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(settings=settings, warm_up=False, eval_mode="eager")
    qtbot.addWidget(w)
    w.resize(1280, 840)
    w.show()
    w.submitted = []
    submit = w.worker.submit

    def recorded(kind, func, *args, **kwargs):
        request_id = submit(kind, func, *args, **kwargs)
        w.submitted.append((kind, func, args, request_id))
        return request_id
    w.worker.submit = recorded
    return w


def fake_info(name, reference, path, target=None, context=None):
    """What `compute.describe` would say of a flow whose data sample is `reference`."""
    reference = np.asarray(reference, np.float32)
    dim = reference.shape[1]
    conditional = context is not None
    return {"name": name, "path": str(path), "load_path": str(path), "kind": "keras",
            "event_dim": dim, "num_layers": 3,
            "context_dim": len(context) if conditional else None,
            "context": np.asarray(context, np.float32) if conditional else None,
            "context_names": [f"c{k + 1}" for k in range(len(context))] if conditional
            else None,
            "data_names": None,
            "context_ranges": [(0.0, 1.0)] * len(context) if conditional else None,
            "context_steps": None, "layer_names": ["A (a)", "B (b)", "C (c)"],
            "has_trace": True, "invertible": True, "base_loc": np.zeros(dim, np.float32),
            "base_scale": np.ones(dim, np.float32), "base_df": None,
            "forward_only_layers": [], "reference": reference, "reference_is_data": True,
            "reference_source": "fake", "data_mean": reference.mean(0), "target": target,
            "image": None, "manifest": {}}


def open_fake(window, info):
    """The window's answer to an open that produced `info`."""
    generation = window.generation + 1
    window._opened(Result("open", 10_000 + generation, value=info, generation=generation))


def view_range(plot_widget):
    return np.array(plot_widget.getPlotItem().getViewBox().viewRange())


# -- Density: the target beside the flow ----------------------------------------------------
def test_the_target_heatmap_follows_the_flows_range_to_a_new_model_and_dims(qtbot, window,
                                                                            tmp_path):
    rng = np.random.default_rng(0)
    open_fake(window, fake_info("a", rng.standard_normal((500, 2)), tmp_path / "a.keras",
                                target="u1"))
    view = window.show_view("density")
    assert view.source.currentData() == "both"
    far = rng.standard_normal((500, 2)) + [6.0, -4.0]
    open_fake(window, fake_info("b", far, tmp_path / "b.keras", target="u3"))
    qtbot.wait(50)
    assert view_range(view.plot)[0].mean() > 4.0          # around the new model's data
    np.testing.assert_allclose(view_range(view.right.plot), view_range(view.plot))
    window.panel.set_dims(1, 0)                             # the coordinates swapped
    qtbot.wait(50)
    assert view_range(view.plot)[0].mean() < -2.0
    np.testing.assert_allclose(view_range(view.right.plot), view_range(view.plot))


def test_the_show_box_grows_to_its_longest_entry_when_a_model_with_a_target_opens(
        qtbot, window, tmp_path):
    """It kept the width of the plain flow's entries and read "flow | tar"."""
    rng = np.random.default_rng(0)
    open_fake(window, fake_info("a", rng.standard_normal((500, 2)), tmp_path / "a.keras"))
    view = window.show_view("density")
    qtbot.wait(50)
    open_fake(window, fake_info("b", rng.standard_normal((500, 2)), tmp_path / "b.keras",
                                target="u3"))
    qtbot.wait(50)
    box = view.source
    assert box.currentText() == "flow | target u3 side by side"
    assert box.width() > box.fontMetrics().horizontalAdvance(box.currentText())


# -- following after an open that failed ----------------------------------------------------
def fail_open(window):
    window._on_result(Result("open", window._open_id, error="not a readable .keras archive"))


def test_a_failed_open_while_following_follows_that_file_for_its_next_save(qtbot, window,
                                                                          tmp_path):
    shown, broken = tmp_path / "a.keras", tmp_path / "b.keras"
    shown.write_bytes(b"a")
    broken.write_bytes(b"PK\x03\x04 the first bytes")
    open_fake(window, fake_info("a", np.zeros((10, 2)), shown))
    window.set_following(True)
    dialogs = []
    window.failed.connect(dialogs.append)
    assert window.open_path(broken)
    fail_open(window)
    assert window.info["name"] == "a" and dialogs == []      # the shown model is kept
    assert window.follow_action.isChecked() and window.follower.paths == (str(broken),)
    assert "waiting for the next save of" in window.model_label.text()
    assert "not a readable .keras archive" in window.model_label.text()
    opens = len(window.submitted)
    broken.write_bytes(b"PK\x03\x04 the whole file, saved again")
    qtbot.waitUntil(lambda: len(window.submitted) > opens, timeout=10_000)
    kind, func, (source,), request_id = window.submitted[-1]
    assert (kind, func, str(source.path)) == ("open", "load", str(broken))
    assert window._open_id == request_id and window._awaited[0] == str(broken)


def test_follow_at_launch_reads_a_save_that_landed_while_the_open_failed(qtbot, window,
                                                                        tmp_path):
    path = tmp_path / "live.keras"
    path.write_bytes(b"PK\x03\x04 the first bytes")
    window.set_following(True)                              # (as `start(path, follow=True)`)
    assert window.open_path(path)
    path.write_bytes(b"PK\x03\x04 the whole file, saved while the first bytes were read")
    opens = len(window.submitted)
    fail_open(window)
    assert window.follower.active and "waiting for" in window.model_label.text()
    qtbot.waitUntil(lambda: len(window.submitted) > opens, timeout=10_000)
    assert window.submitted[-1][:2] == ("open", "load")


# -- held values and contour lines ----------------------------------------------------------
def test_held_values_keep_a_large_and_a_small_data_mean(qtbot):
    panel = ProjectionPanel()
    qtbot.addWidget(panel)
    mean = np.array([1.7, 45.0, 55_000.0, 0.00042], np.float32)
    held = panel.set_model(4, mean, ["height", "age", "income", "rate"]).held
    np.testing.assert_array_equal(held, mean)
    panel.set_held(2, -250_000.0)
    assert panel.projection().held[2] == -250_000.0
    panel._reset()
    np.testing.assert_array_equal(panel.projection().held, mean)
    # means in small units (5e-7 shows as 0.000001 at 6 decimals): held exactly, as
    # shown until the user moves the box
    emitted = []
    panel.changed.connect(lambda p: emitted.append(p.held.copy()))
    tiny = np.array([5e-7, 5e-7, 5e-7, 2.4e-7], np.float32)
    np.testing.assert_array_equal(panel.set_model(4, tiny).held, tiny)
    panel.set_held(3, 2.5e-7)                       # shows 0 as before, yet moves the slice
    assert emitted and emitted[-1][3] == np.float32(2.5e-7)
    panel.spins[2].setValue(0.25)                   # typed: the box's value
    assert panel.projection().held[2] == 0.25
    panel._reset()
    np.testing.assert_array_equal(panel.projection().held, tiny)


def test_a_contour_level_of_a_linear_ramp_lies_where_the_ramp_takes_it():
    region, n = (0.0, 1.0, 2.0, 4.0), 8
    ramp = np.tile(geometry.pixel_centers(0.0, 1.0, n), (n, 1))  # value = x of the pixel
    for image, axis, at in ((ramp, 0, 0.5), (ramp.T.copy(), 1, 3.0)):  # (y from 2 to 4)
        xy, connect = contour_lines(image, region, [0.5])
        np.testing.assert_allclose(xy[:, axis], at, atol=1e-9)
        other = xy[:, 1 - axis]
        assert other.min() >= region[2 - 2 * axis] - 1e-9
        assert other.max() <= region[3 - 2 * axis] + 1e-9


# -- a context animation in continuous mode -------------------------------------------------
def answer_samples(window):
    """Answers each samples request (soon, as the compute thread would) with normal
    points at its seed."""
    submit = window.worker.submit

    def answered(kind, func, *args, generation=None, **kwargs):
        request_id = submit(kind, func, *args, generation=generation, **kwargs)
        if kind == "samples":
            count, seed = args[0], args[1]
            points = np.random.default_rng(seed).standard_normal((count, 2)).astype("f4")
            result = Result("samples", request_id, generation=generation,
                            value={"points": points, "seed": seed, "temperature": 1.0})
            QtCore.QTimer.singleShot(5, window, lambda: window._on_result(result))
        return request_id
    window.worker.submit = answered


def test_context_animation_of_continuous_samples_finishes_and_resumes_them(qtbot, window,
                                                                           tmp_path):
    answer_samples(window)
    info = fake_info("c", np.zeros((50, 2)), tmp_path / "c.keras", context=[0.0])
    open_fake(window, info)
    view = window.show_view("samples")
    view.count.setValue(200)
    view.continuous.setChecked(True)
    qtbot.wait(100)
    frames = animation.record_context(window, 0, [0.5, 1.0], timeout=30.0)
    assert len(frames) == 2
    assert view.continuous.isChecked()
    seed = view.seed
    qtbot.waitUntil(lambda: view.seed > seed + 2, timeout=30_000)   # drawing on


# -- recent files ---------------------------------------------------------------------------
def test_recent_files_are_absolute_paths(window, tmp_path, monkeypatch):
    (tmp_path / "m.keras").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    source = paths.resolve("m.keras")
    assert source.path == tmp_path / "m.keras"
    open_fake(window, fake_info("m", np.zeros((10, 2)), source.path))
    monkeypatch.chdir("/")
    assert window._recent()[0] == str(tmp_path / "m.keras")
    assert paths.resolve(window._recent()[0]).load_path == tmp_path / "m.keras"


# -- Layers: a trace of the other direction -------------------------------------------------
def answer_layers(window, request, direction):
    """The window's answer to the layers request `request` (as `window.submitted` has
    it) traced in `direction`: every state the points themselves."""
    _, _, (_, points), request_id = request
    states = np.stack([points] * 4).astype(np.float32)
    window._on_result(Result("layers", request_id, generation=window.generation,
                             value={"states": states, "log_dets": None,
                                    "direction": direction}))


def test_a_layer_trace_of_the_other_direction_is_neither_drawn_nor_kept(window, tmp_path):
    rng = np.random.default_rng(0)
    open_fake(window, fake_info("d", rng.standard_normal((300, 3)), tmp_path / "d.keras"))
    view = window.show_view("layers")
    forward = window.submitted[-1]
    assert forward[:3] == ("layers", "layers", ("forward", forward[2][1]))
    view.direction.setCurrentIndex(1)                        # data -> base asked for
    answer_layers(window, forward, "forward")                # the forward trace comes late
    assert view.grid_states is None
    inverse = window.submitted[-1]
    assert inverse[2][0] == "inverse"
    view.direction.blockSignals(True)            # back to base -> data, silently (as
    view.direction.setCurrentIndex(0)            # `_allow_inverse` does)
    view.direction.blockSignals(False)
    answer_layers(window, inverse, "inverse")                # the latest trace
    assert "forward" not in view._sources and view.grid_states is None


def test_reload_while_waiting_for_a_failed_file_goes_back_to_the_shown_model(qtbot, window,
                                                                              tmp_path):
    # F5 reloaded the shown model but kept waiting for the failed file, and a change to
    # the shown model's files then opened the failed one
    shown, broken = tmp_path / "a.keras", tmp_path / "b.keras"
    shown.write_bytes(b"a")
    broken.write_bytes(b"PK\x03\x04 the first bytes")
    open_fake(window, fake_info("a", np.zeros((10, 2)), shown))
    window.set_following(True)
    assert window.open_path(broken)
    fail_open(window)
    assert window._awaited is not None
    assert window.reload()
    assert window._awaited is None and window.follower.paths == (str(shown),)
    assert "waiting for" not in window.model_label.text()
    kind, func, (source,), _ = window.submitted[-1]
    assert (kind, func, str(source.path)) == ("open", "load", str(shown))


# -- a context animation while a coordinate plays, and cancelled while it waits --------------
def test_context_animation_stops_a_playing_coordinate_and_plays_it_on_after(qtbot, window,
                                                                            tmp_path):
    # the ▶ timer kept moving the context: frames drawn at other values, and a view that
    # waited for each value in vain (120 s, then an error)
    answer_samples(window)
    open_fake(window, fake_info("c", np.zeros((50, 2)), tmp_path / "c.keras", context=[0.0]))
    view = window.show_view("samples")
    panel = window.context_panel
    panel.plays[0].click()
    assert panel.playing == 0 and panel.timer.isActive()
    seen = []

    def progress(done, total):
        seen.append((panel.timer.isActive(), float(window.context[0]),
                     float(view.drawn_context[0])))
        return True

    values = [0.25, 0.5, 0.75]
    start = panel.spins[0].value()
    assert len(animation.record_context(window, 0, values, progress, timeout=30.0)) == 3
    assert seen == [(False, v, v) for v in values]
    assert panel.spins[0].value() == start, "put back"
    assert panel.playing == 0 and panel.timer.isActive() and panel.plays[0].isChecked()


def test_context_animation_cancelled_while_a_frame_is_waited_for_stops_there(
        qtbot, window, tmp_path, monkeypatch):
    # the compute thread never answers here: Cancel was seen only after a frame came
    open_fake(window, fake_info("c", np.zeros((50, 2)), tmp_path / "c.keras", context=[0.0]))
    window.show_view("samples")
    asked = []

    def cancelled():
        asked.append(True)
        return len(asked) > 3             # pressed while the first frame is waited for
    assert animation.record_context(window, 0, [0.5, 1.0], timeout=20.0,
                                    cancelled=cancelled) is None
    assert window.context_panel.spins[0].value() == 0.0, "put back"
    # File > Export context animation: its progress dialog's Cancel
    monkeypatch.setattr(QtWidgets.QProgressDialog, "wasCanceled", lambda self: True)
    window.error_box = None
    assert window.save_context_animation(tmp_path / "c.gif") is None
    assert window.error_box is None and not (tmp_path / "c.gif").exists()


def test_context_animation_ends_with_a_message_when_another_model_opens_meanwhile(
        qtbot, window, tmp_path):
    """Recording coordinate 3 of a model while another with one coordinate opened raised
    IndexError (the panel's spin 3 was gone), and the sweep on into an unconditional
    model wrote its samples under this one's caption."""
    answer_samples(window)
    for other in (fake_info("d", np.zeros((50, 2)), tmp_path / "d.keras", context=[0.0]),
                  fake_info("m", np.zeros((50, 2)), tmp_path / "m.keras")):
        open_fake(window, fake_info("c", np.zeros((50, 2)), tmp_path / "c.keras",
                                    context=[0.0, 0.0, 0.0]))
        window.show_view("samples")

        def progress(done, total):
            if done == 1:                   # the other model opens after the first frame
                open_fake(window, other)
            return True
        with pytest.raises(animation.AnimationError, match=rf"^{other['name']} was opened while "
                           "the sweep of c3 was recorded; nothing was written"):
            animation.record_context(window, 2, [0.25, 0.5, 0.75], progress, timeout=30.0)
        assert window.info["name"] == other["name"]
        assert (window.context is None) == (other["context_dim"] is None)
    # the same file reloaded (--follow, a new epoch): the panel, kept, is put back and
    # its playing coordinate plays on (it was left on a swept value)
    info = fake_info("c", np.zeros((50, 2)), tmp_path / "c.keras", context=[0.0, 0.0, 0.0])
    open_fake(window, info)
    window.show_view("samples")
    panel = window.context_panel
    panel.play(0)

    def reload(done, total):
        if done == 1:
            g = window.generation + 1
            window._opened(Result("open", 20_000 + g, value=dict(info), generation=g),
                           reload=True)
        return True
    with pytest.raises(animation.AnimationError, match="^c was opened while the sweep of c3"):
        animation.record_context(window, 2, [0.25, 0.5, 0.75], reload, timeout=30.0)
    assert panel.spins[2].value() == 0.0 and panel.playing == 0


# -- Export view data: the context the arrays were computed at --------------------------------
def test_view_data_saves_the_context_its_arrays_were_computed_at(qtbot, window, tmp_path):
    # the Context panel's, taken while the view still showed the last context's arrays
    answer_samples(window)
    open_fake(window, fake_info("c", np.zeros((50, 2)), tmp_path / "c.keras", context=[0.25]))
    view = window.show_view("samples")
    qtbot.waitUntil(view.is_ready, timeout=10_000)
    window.context_panel.set_value(0, 0.75)
    assert not view.is_ready() and window.context.tolist() == [0.75]
    assert window.view_data()["context"].tolist() == [0.25]
    qtbot.waitUntil(view.is_ready, timeout=10_000)
    assert window.view_data()["context"].tolist() == [0.75]



def test_view_data_saves_the_held_values_its_arrays_were_computed_at(window, tmp_path):
    # the panel's were saved, taken while the view still showed the last ones' states
    open_fake(window, fake_info("d", np.random.default_rng(0).standard_normal((300, 3)),
                                tmp_path / "d.keras"))
    window.show_view("layers")
    answer_layers(window, window.submitted[-1], "forward")
    before = window.view_data()["held"].copy()
    window.panel.set_held(2, 1.5)
    asked = window.submitted[-1]
    assert asked[0] == "layers" and window.projection.held[2] == 1.5
    data = window.view_data()
    np.testing.assert_array_equal(data["held"], before)
    assert data["dims"].tolist() == [0, 1]
    answer_layers(window, asked, "forward")
    assert window.view_data()["held"][2] == 1.5

def test_the_samples_view_holds_no_values_and_says_so(qtbot, window, tmp_path):
    """The Samples view draws every sample's two chosen coordinates, yet the panel
    said the others were held, and its exported data carried `held` values its
    samples were not drawn at."""
    answer_samples(window)
    open_fake(window, fake_info("d", np.random.default_rng(0).standard_normal((300, 3)),
                                tmp_path / "d.keras"))
    view = window.show_view("samples")
    qtbot.waitUntil(view.is_ready, timeout=10_000)
    data = window.view_data()
    assert "held" not in data and data["dims"].tolist() == [0, 1]
    assert not window.panel.values.isEnabled() and "projection" in window.panel.note.text()
    window.show_view("layers")
    assert window.panel.values.isEnabled() and "held fixed" in window.panel.note.text()


# -- Layers: the states keep the direction they were traced in -------------------------------
def test_layer_states_are_named_and_exported_in_the_direction_they_were_traced(window,
                                                                             tmp_path):
    open_fake(window, fake_info("d", np.random.default_rng(0).standard_normal((300, 2)),
                                tmp_path / "d.keras", context=[0.25]))
    view = window.show_view("layers")
    answer_layers(window, window.submitted[-1], "forward")
    forward = view.state_names()
    assert forward[0] == "0 · base z" and view.export_data()["direction"] == "forward"
    view.direction.setCurrentIndex(1)          # data -> base asked for, not traced yet
    window.context_panel.set_value(0, 0.75)
    assert view.grid_states is not None and not view.is_ready()
    data = window.view_data()
    assert data["direction"] == "forward" and list(data["state_names"]) == forward
    assert data["context"].tolist() == [0.25]
    assert animation.LayerStates(view).names == forward
    answer_layers(window, window.submitted[-1], "inverse")
    data = window.view_data()
    assert data["direction"] == "inverse" and data["state_names"][0] == "0 · data x"
    assert data["context"].tolist() == [0.75]


# -- Layers ▸ Previous / Next layer ----------------------------------------------------------
def test_previous_and_next_layer_go_to_the_state_on_that_side_whatever_is_focused(
        qtbot, window, tmp_path):
    open_fake(window, fake_info("d", np.zeros((50, 2)), tmp_path / "d.keras"))
    view = window.show_view("layers")
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    Key = QtCore.Qt.Key
    # from between two states (where Play paused), the first step goes to the one on
    # that side: round(2.4) - 1 skipped 2, round(2.6) + 1 skipped 3
    for start, key, want in ((2.4, Key.Key_BracketLeft, 2), (2.6, Key.Key_BracketRight, 3),
                             (2.5, Key.Key_BracketLeft, 2), (2.5, Key.Key_BracketRight, 3),
                             (2.0, Key.Key_BracketLeft, 1), (2.0, Key.Key_BracketRight, 3),
                             (2.6, Key.Key_PageUp, 2), (0.4, Key.Key_PageDown, 1),
                             (0.4, Key.Key_BracketLeft, 0), (3.0, Key.Key_BracketRight, 3)):
        view.set_layer(start)
        view.plot.setFocus()
        qtbot.keyClick(view.plot, key)
        assert view.position == want, (start, key)
    # the slider focused (after a drag): Page Up is Previous layer still, not a page on
    for start, key, want in ((2.0, Key.Key_PageUp, 1), (2.0, Key.Key_PageDown, 3),
                             (1.4, Key.Key_PageUp, 1)):
        view.set_layer(start)
        view.slider.setFocus()
        assert QtWidgets.QApplication.focusWidget() is view.slider
        qtbot.keyClick(view.slider, key)
        assert view.position == want, (start, key)


# -- menu actions that need a model ----------------------------------------------------------
def test_file_actions_that_need_a_model_are_off_until_one_can_use_them(window, tmp_path):
    actions = {a.text().replace("&", "").rstrip("…"): a
               for a in window.menuBar().actions()[0].menu().actions()}
    needing = ("Reload", "Export view as PNG", "Export context animation")
    assert [actions[name].isEnabled() for name in needing] == [False, False, False]
    open_fake(window, fake_info("a", np.zeros((10, 2)), tmp_path / "a.keras"))
    assert [actions[name].isEnabled() for name in needing] == [True, True, False]
    open_fake(window, fake_info("c", np.zeros((10, 2)), tmp_path / "c.keras", context=[0.0]))
    assert [actions[name].isEnabled() for name in needing] == [True, True, True]
    open_fake(window, fake_info("b", np.zeros((10, 2)), tmp_path / "b.keras"))
    assert not actions["Export context animation"].isEnabled()



def test_reload_is_off_while_another_model_opens(window, tmp_path):
    # it was on, and did nothing: reload() refuses while an open is on its way
    reload = window.reload_action
    open_fake(window, fake_info("a", np.zeros((10, 2)), tmp_path / "a.keras"))
    assert reload.isEnabled()
    (tmp_path / "b.keras").write_bytes(b"not a zip")
    assert window.open_path(tmp_path / "b.keras")
    assert not reload.isEnabled() and not window.reload()
    window._on_result(Result("open", window._open_id, error="not a readable .keras archive"))
    assert reload.isEnabled() and window.info["name"] == "a"

def test_the_shortcuts_help_names_every_view_r_resamples(window):
    window.show_shortcuts()
    text = window.info_box.text()
    owners = [window.views[name].title for name, actions in window._view_actions.items()
              if any(a.shortcut().toString() == "R" for a in actions)]
    assert owners == ["Samples", "Pairs"]
    assert f"R while the {' or '.join(owners)} view is" in text
    window.info_box.close()
