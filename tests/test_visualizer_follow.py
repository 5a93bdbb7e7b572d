"""Reloading and following a model file (pytest-qt, offscreen): `FileFollower`
reports one change per save, atomic or in place; File ▸ Reload and Follow keep
the views' state and draw the new weights; a file caught mid-write keeps the
previous model without a dialog; a Keras `ModelCheckpoint` is followed."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kerasflows  # noqa: E402  (TensorFlow imported here before the compute thread does)
from kerasflows.cli import train as cli_train  # noqa: E402
from test_visualizer_support import make_flow, started_window  # noqa: E402
from visualizer import geometry  # noqa: E402
from visualizer.__main__ import main as viz_main  # noqa: E402
from visualizer.follow import FileFollower, signature  # noqa: E402

pytestmark = pytest.mark.gui
TIMEOUT_MS = 120_000


# -- FileFollower ---------------------------------------------------------------------------
@pytest.fixture
def follower(qapp):
    f = FileFollower(settle_ms=100, poll_ms=150)
    yield f
    f.stop()


def _count(follower):
    seen = []
    follower.changed.connect(lambda: seen.append(1))
    return seen


def test_follower_reports_each_save_once_after_it_settles(qtbot, follower, tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes(b"a" * 100)
    follower.follow([path])
    seen = _count(follower)
    qtbot.wait(400)
    assert seen == [], "nothing changed"
    with open(path, "wb") as f:                  # an in-place rewrite in three writes
        for chunk in (b"b" * 50, b"c" * 50, b"d" * 50):
            f.write(chunk)
            f.flush()
            qtbot.wait(30)
    qtbot.waitUntil(lambda: len(seen) == 1, timeout=5000)
    qtbot.wait(400)
    assert len(seen) == 1, "one save, one report"
    tmp = tmp_path / ".m.saving.keras"            # an atomic save: written beside, renamed over
    tmp.write_bytes(b"e" * 120)
    os.replace(tmp, path)
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=5000)
    os.replace(path, tmp_path / "gone")           # removed: nothing to report yet ...
    qtbot.wait(500)
    assert len(seen) == 2
    (tmp_path / "gone").rename(path)               # ... until it returns (same bytes, new mtime?)
    path.write_bytes(b"f" * 130)
    qtbot.waitUntil(lambda: len(seen) == 3, timeout=5000)
    follower.stop()
    path.write_bytes(b"g" * 140)
    qtbot.wait(500)
    assert len(seen) == 3 and not follower.active


def test_saves_closer_than_the_settle_time_are_reported_while_they_go_on(qtbot, follower,
                                                                         tmp_path):
    """Each save restarted the settle timer: epochs saved every 0.25 s (settle 0.4 s)
    were reported once, after the last (`kerasflows train --save-every-epoch` of
    moons with batch 64 showed nothing until training ended). Now a change waits at
    most `max_wait_ms` (4 settle times) before it is reported."""
    path = tmp_path / "m.keras"
    path.write_bytes(b"a" * 100)
    follower.follow([path])
    seen = _count(follower)
    for k in range(24):                         # an atomic save every 60 ms for 1.4 s
        tmp = tmp_path / ".m.saving.keras"
        tmp.write_bytes(bytes([k]) * 100)
        os.replace(tmp, path)
        qtbot.wait(60)
        if k == 11:
            assert len(seen) >= 1, "one report within 0.7 s of saves every 60 ms"
    assert len(seen) >= 2
    qtbot.waitUntil(lambda: follower.reported == signature([path]), timeout=5000)


def test_follower_polls_when_no_event_arrives(qtbot, follower, tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes(b"a")
    follower.follow([path])
    seen = _count(follower)
    follower._watcher.removePaths(follower._watcher.files())   # as on a file system without events
    follower._watcher.blockSignals(True)
    path.write_bytes(b"bb")
    qtbot.waitUntil(lambda: len(seen) == 1, timeout=5000)


def test_signature_covers_a_savedmodels_files(tmp_path):
    (tmp_path / "variables").mkdir()
    (tmp_path / "saved_model.pb").write_bytes(b"x")
    (tmp_path / "variables" / "variables.index").write_bytes(b"i")
    before = signature([tmp_path])
    (tmp_path / "variables" / "variables.index").write_bytes(b"ii")
    assert signature([tmp_path]) != before
    (tmp_path / "2" / "variables").mkdir(parents=True)   # a version written in place
    before = signature([tmp_path])
    (tmp_path / "2" / "variables" / "variables.data-00000-of-00001").write_bytes(b"d")
    assert signature([tmp_path]) != before


# -- the window ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def flows():
    return make_flow(seed=0), make_flow(seed=7), make_flow(seed=11)


@pytest.fixture(scope="module")
def window(qapp, flows, tmp_path_factory):
    w = started_window(qapp, tmp_path_factory.mktemp("viz_follow"))
    w.follower._settle.setInterval(100)
    w.follower._poll.setInterval(150)   # a file that does not exist yet: seen by the poll only
    yield w
    w.close()


def _close(a, b):
    """Equal up to float32 rounding: the window's compute thread and this one run
    the same flow with their own thread pools, whose summation orders differ by
    about 1e-6 relative, and a trained flow's log-density reaches -1e3 on the grid.
    Different weights differ by nats over most of it."""
    return np.allclose(a, b, rtol=1e-4, atol=1e-3)


def _density_matches(view, flow):
    if not view.is_ready() or view.image is None or view.image.shape != (64, 64):
        return False
    xy = geometry.grid_points(view.region, 64)
    return _close(view.image.ravel(), flow.log_prob(xy).numpy())


def test_reload_and_follow_keep_the_views_and_draw_the_new_weights(qtbot, window, flows,
                                                                  tmp_path):
    first, second, third = flows
    path = tmp_path / "training.keras"
    first.save(path)
    with qtbot.waitSignal(window.model_opened, timeout=TIMEOUT_MS):
        assert window.open_path(path)
    layers = window.show_view("layers")
    qtbot.waitUntil(layers.is_ready, timeout=TIMEOUT_MS)
    layers.set_layer(2)
    view = window.show_view("density")
    view.resolution.setCurrentIndex(0)                       # 64 x 64
    view.view_box.setRange(xRange=(-1.2, 0.8), yRange=(-0.9, 1.1), padding=0)
    qtbot.waitUntil(lambda: _density_matches(view, first), timeout=TIMEOUT_MS)
    region = view.visible_region()

    second.save(path)                                        # File > Reload
    with qtbot.waitSignal(window.model_reloaded, timeout=TIMEOUT_MS):
        assert window.reload()
    qtbot.waitUntil(lambda: _density_matches(view, second), timeout=TIMEOUT_MS)
    assert not _density_matches(view, first), "the weights differ"
    assert np.allclose(view.visible_region(), region), "the region is kept"
    assert layers.position == 2 and window.reloads == 1
    assert "reloaded 1×" in window.follow_label.text()

    window.set_following(True)                               # File > Follow File Changes
    assert window.follow_action.isChecked() and window.follower.active
    assert "following" in window.follow_label.text()
    with qtbot.waitSignal(window.model_reloaded, timeout=TIMEOUT_MS):
        cli_train.save_atomically(third, str(path))
    qtbot.waitUntil(lambda: _density_matches(view, third), timeout=TIMEOUT_MS)
    assert np.allclose(view.visible_region(), region) and layers.position == 2

    # A file caught mid-write: the previous model stays, no dialog, the status bar says so.
    info = window.info
    path.write_bytes(b"PK\x03\x04 half a zip")
    qtbot.waitUntil(lambda: window.reload_error is not None, timeout=TIMEOUT_MS)
    assert window.info is info and window.error_box is None
    assert "failed" in window.follow_label.text() and window.follow_label.toolTip()
    frames = view.frames
    view.view_box.setRange(xRange=(-1.1, 0.9), yRange=(-0.8, 1.2), padding=0)
    qtbot.waitUntil(lambda: view.frames > frames and _density_matches(view, third),
                    timeout=TIMEOUT_MS)
    with qtbot.waitSignal(window.model_reloaded, timeout=TIMEOUT_MS):
        second.save(path)                                    # the next save recovers
    qtbot.waitUntil(lambda: _density_matches(view, second), timeout=TIMEOUT_MS)
    assert window.reload_error is None and window.reloads == 3

    # Asked for by the user, a failed reload is a dialog.
    path.write_bytes(b"junk")
    window.set_following(False)
    assert not window.follower.active
    with qtbot.waitSignal(window.failed, timeout=TIMEOUT_MS) as blocker:
        window.reload()
    assert "Could not reload" in blocker.args[0]
    window.error_box.close()
    assert window.info["path"] == str(path)


def test_reload_of_a_model_with_other_dimensions_resets_the_views(qtbot, window, tmp_path):
    path = tmp_path / "m.keras"
    make_flow(seed=1).save(path)
    with qtbot.waitSignal(window.model_opened, timeout=TIMEOUT_MS):
        window.open_path(path)
    assert window.reloads == 0 and not window.dock.isVisible()
    make_flow(event_dim=3, seed=2).save(path)
    with qtbot.waitSignal(window.model_reloaded, timeout=TIMEOUT_MS):
        window.reload()
    assert window.info["event_dim"] == 3 and window.projection.event_dim == 3
    assert window.dock.isVisible() and len(window.panel.spins) == 3
    view = window.show_view("samples")
    qtbot.waitUntil(lambda: view.is_ready() and view.points is not None
                    and view.points.shape[1] == 3, timeout=TIMEOUT_MS)


def test_a_new_model_is_followed_instead_of_the_old_one(qtbot, window, flows, tmp_path):
    a, b = tmp_path / "a.keras", tmp_path / "b.keras"
    flows[0].save(a)
    flows[1].save(b)
    window.set_following(True)
    with qtbot.waitSignal(window.model_opened, timeout=TIMEOUT_MS):
        window.open_path(a)
    assert window.follower.paths == (str(a),)
    with qtbot.waitSignal(window.model_opened, timeout=TIMEOUT_MS):
        window.open_path(b)
    assert window.follower.paths == (str(b),) and window.reloads == 0
    window.set_following(False)


def test_a_save_while_the_model_opens_is_followed(qtbot, window, flows, tmp_path,
                                                  monkeypatch):
    """The follower started from the files as they were once the open was done, so a
    save that landed while the model was being read was never shown."""
    from visualizer import compute
    path = tmp_path / "live.keras"
    flows[0].save(path)
    load = compute.load

    def load_then_save(*args, **kwargs):         # the training run saves meanwhile
        opened = load(*args, **kwargs)
        flows[1].save(tmp_path / "next.keras")
        os.replace(tmp_path / "next.keras", path)
        return opened
    monkeypatch.setattr(compute, "load", load_then_save)
    window.set_following(True)
    with qtbot.waitSignal(window.model_opened, timeout=TIMEOUT_MS):
        window.open_path(path)
    monkeypatch.setattr(compute, "load", load)
    view = window.show_view("density")
    view.resolution.setCurrentIndex(0)                       # 64 x 64
    qtbot.waitUntil(lambda: window.reloads == 1 and _density_matches(view, flows[1]),
                    timeout=TIMEOUT_MS)
    window.set_following(False)


# -- command lines ------------------------------------------------------------------------
def test_viz_follow_flag_needs_the_window(capsys):
    assert viz_main(["--follow", "--screenshot", "x.png"]) == 2
    assert "--follow needs the window" in capsys.readouterr().err


def test_reloads_asked_for_while_one_runs_coalesce_into_one(qtbot, window, flows, tmp_path,
                                                            monkeypatch):
    a, b = tmp_path / "a.keras", tmp_path / "b.keras"
    flows[0].save(a)
    flows[1].save(b)
    with qtbot.waitSignal(window.model_opened, timeout=TIMEOUT_MS):
        window.open_path(a)
    reloaded, opened = [], []
    window.model_reloaded.connect(reloaded.append)
    try:
        assert window.reload(quiet=True) and window.reload(quiet=True) and window.reload(quiet=True)
        qtbot.waitUntil(lambda: len(reloaded) == 2, timeout=TIMEOUT_MS)
        qtbot.waitUntil(window.worker.thread.idle, timeout=TIMEOUT_MS)
        qtbot.wait(200)
        assert len(reloaded) == 2 and window.reloads == 2
        # A file opened while a reload runs wins; the reload's answer is not shown after it.
        window.model_opened.connect(opened.append)
        assert window.reload()
        assert window.open_path(b)
        assert not window.reload(), "nothing to reload while another model opens"
        qtbot.waitUntil(lambda: window.info["path"] == str(b), timeout=TIMEOUT_MS)
        qtbot.waitUntil(window.worker.thread.idle, timeout=TIMEOUT_MS)
        qtbot.wait(200)
        assert window.info["path"] == str(b) and window.reloads == 0
        assert [i["path"] for i in opened][-1] == str(b)
        view = window.show_view("density")
        view.resolution.setCurrentIndex(0)
        qtbot.waitUntil(lambda: _density_matches(view, flows[1]), timeout=TIMEOUT_MS)
        # A bad file opened while a reload runs: the dialog, and the model still draws.
        corrupt = tmp_path / "corrupt.keras"
        corrupt.write_bytes(b"not a zip")
        from visualizer import compute
        real_load = compute.load

        release = threading.Event()

        def held_load(*args, **kwargs):          # runs until the file has been opened
            release.wait(60)
            return real_load(*args, **kwargs)
        monkeypatch.setattr(compute, "load", held_load)
        assert window.reload()
        thread = window.worker.thread          # the reload running, not waiting
        qtbot.waitUntil(lambda: thread._in_flight and not thread._pending, timeout=TIMEOUT_MS)
        with qtbot.waitSignal(window.failed, timeout=TIMEOUT_MS):
            window.open_path(corrupt)
            release.set()
        monkeypatch.setattr(compute, "load", real_load)
        window.error_box.close()
        assert window.info["path"] == str(b)
        frames = view.frames
        view.view_box.setRange(xRange=(-1.3, 0.7), yRange=(-1.0, 1.0), padding=0)
        qtbot.waitUntil(lambda: view.frames > frames and _density_matches(view, flows[1]),
                        timeout=TIMEOUT_MS)
    finally:
        window.model_reloaded.disconnect(reloaded.append)
        if opened:
            window.model_opened.disconnect(opened.append)


def test_a_flow_fitted_with_a_keras_model_checkpoint_is_followed(qtbot, window, tmp_path):
    import keras
    flow = make_flow(seed=3)
    path = tmp_path / "fit.keras"
    flow.save(path)
    window.set_following(True)
    try:
        with qtbot.waitSignal(window.model_opened, timeout=TIMEOUT_MS):
            window.open_path(path)
        view = window.show_view("density")
        view.resolution.setCurrentIndex(0)
        qtbot.waitUntil(lambda: _density_matches(view, flow), timeout=TIMEOUT_MS)
        untrained = view.image.ravel().copy()
        # A plain graph step: XLA-compiling it would take longer than the two epochs.
        flow.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
        x = kerasflows.datasets.load("moons", n=512, seed=0)
        with qtbot.waitSignal(window.model_reloaded, timeout=TIMEOUT_MS):
            flow.fit(x, epochs=2, batch_size=128, verbose=0,
                     callbacks=[keras.callbacks.ModelCheckpoint(str(path))])
        qtbot.waitUntil(lambda: _density_matches(view, flow), timeout=TIMEOUT_MS)
        assert not _close(view.image.ravel(), untrained), "the trained weights are drawn"
    finally:
        window.set_following(False)


def test_a_new_savedmodel_version_is_followed(qtbot, window, flows, tmp_path):
    from test_visualizer_support import export
    serving = tmp_path / "serving"
    export(flows[0], serving / "1")
    window.set_following(True)
    try:
        with qtbot.waitSignal(window.model_opened, timeout=TIMEOUT_MS):
            window.open_path(serving)
        assert window.info["kind"] == "savedmodel"
        view = window.show_view("density")
        view.resolution.setCurrentIndex(0)
        qtbot.waitUntil(lambda: _density_matches(view, flows[0]), timeout=TIMEOUT_MS)
        reloaded = []
        window.model_reloaded.connect(reloaded.append)
        export(flows[1], serving / "2")              # TF Serving's next version
        qtbot.waitUntil(lambda: window.info["load_path"] == str(serving / "2"),
                        timeout=TIMEOUT_MS)
        window.model_reloaded.disconnect(reloaded.append)
        assert len(reloaded) == 1, "the exporter's hidden partial version is not a reload"
        assert str(serving / "2") in window.follower.paths
        qtbot.waitUntil(lambda: _density_matches(view, flows[1]), timeout=TIMEOUT_MS)
    finally:
        window.set_following(False)


def test_following_a_model_that_does_not_exist_yet_opens_it_when_written(qtbot, window, flows,
                                                                         tmp_path):
    path = tmp_path / "later.keras"
    dialogs = []
    window.failed.connect(dialogs.append)
    window.start(path, follow=True)
    try:
        assert "waiting for" in window.model_label.text()
        path.write_bytes(b"PK\x03\x04 the first bytes")         # caught mid-write: no dialog
        qtbot.waitUntil(lambda: "waiting for" in window.model_label.text()
                        and "not a readable .keras archive" in window.model_label.text(),
                        timeout=TIMEOUT_MS)
        with qtbot.waitSignal(window.model_opened, timeout=TIMEOUT_MS):
            flows[2].save(path)
        assert window.info["path"] == str(path) and window.follower.paths == (str(path),)
        view = window.show_view("density")
        view.resolution.setCurrentIndex(0)
        qtbot.waitUntil(lambda: _density_matches(view, flows[2]), timeout=TIMEOUT_MS)
        with qtbot.waitSignal(window.model_reloaded, timeout=TIMEOUT_MS):
            flows[0].save(path)                                  # and follows it from then on
        assert dialogs == []
    finally:
        window.set_following(False)
        window.failed.disconnect(dialogs.append)
    other = tmp_path / "never.keras"                             # stopping stops the wait
    window.start(other, follow=True)
    window.set_following(False)
    assert window._awaited is None and "waiting" not in window.model_label.text()


def test_reload_keeps_a_conditional_flows_context(qtbot, window, tmp_path):
    path = tmp_path / "cond.keras"
    flow = make_flow(context_dim=2, seed=5)
    flow.save(path)
    with qtbot.waitSignal(window.model_opened, timeout=TIMEOUT_MS):
        window.open_path(path)
    window.context_panel.set_value(0, 0.5)
    window.context_panel.set_value(1, -0.25)
    np.testing.assert_allclose(window.context, [0.5, -0.25])
    fresh = make_flow(context_dim=2, seed=6)
    fresh.save(path)
    with qtbot.waitSignal(window.model_reloaded, timeout=TIMEOUT_MS):
        window.reload()
    np.testing.assert_allclose(window.context, [0.5, -0.25])
    assert [s.value() for s in window.context_panel.spins] == [0.5, -0.25]
    view = window.show_view("density")
    view.resolution.setCurrentIndex(0)
    c = np.tile(np.float32([[0.5, -0.25]]), (64 * 64, 1))

    def drawn_at_context():
        if not view.is_ready() or view.image is None or view.image.shape != (64, 64):
            return False
        xy = geometry.grid_points(view.region, 64)
        return np.allclose(view.image.ravel(), fresh.log_prob(xy, context=c).numpy(),
                           rtol=1e-5, atol=1e-4)
    qtbot.waitUntil(drawn_at_context, timeout=TIMEOUT_MS)


def test_followed_reloads_skip_the_warm_up(qtbot, window, flows, tmp_path, monkeypatch):
    path = tmp_path / "w.keras"
    flows[0].save(path)
    with qtbot.waitSignal(window.model_opened, timeout=TIMEOUT_MS):
        window.open_path(path)
    warmed = []
    monkeypatch.setattr(window, "warm_up", True)
    monkeypatch.setattr(window, "_submit_warm_up", warmed.append)
    with qtbot.waitSignal(window.model_reloaded, timeout=TIMEOUT_MS):
        window.reload()                                  # asked for: warmed up as an open
    assert len(warmed) == 1
    window.set_following(True)
    try:
        with qtbot.waitSignal(window.model_reloaded, timeout=TIMEOUT_MS):
            flows[1].save(path)
        assert len(warmed) == 1, "a followed file's reloads do not warm up"
    finally:
        window.set_following(False)

