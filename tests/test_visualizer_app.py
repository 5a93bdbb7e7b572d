"""Visualizer GUI (pytest-qt, offscreen): every view draws the flow's own numbers,
the layer slider moves the drawing, errors keep the previous model, D > 2 works,
screenshots are non-blank and differ between layers, shipped models open."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


import contextlib  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402

from kerasflows.loading import write_training_record  # noqa: E402
from shipped_models import SAME_RECIPE_AS_MOONS, recipe  # noqa: E402
from test_visualizer_support import export, make_model_folder, started_window  # noqa: E402
from visualizer import geometry, headless, paths, theme  # noqa: E402
from visualizer.views import density as density_view  # noqa: E402
from visualizer.views.samples import DEFAULT_COUNT  # noqa: E402

pytestmark = pytest.mark.gui
TIMEOUT_MS = 120_000
SHIPPED = sorted(p.parent for p in (paths.default_model_path().parent).glob("*/manifest.json"))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("viz_app_models")
    tiny, flow = make_model_folder(root, "tiny", event_dim=2, num_layers=3)
    wide, wide_flow = make_model_folder(root, "wide", event_dim=4, num_layers=2,
                                        savedmodel=False)
    export(flow, root / "notrace" / "1", with_trace=False)
    planar = make_model_folder(root, "planar", num_layers=4, planar=True, target="u1")
    conditional = make_model_folder(root, "conditional", context_dim=2, savedmodel=False)
    pictures = make_model_folder(root, "pictures", event_dim=16, num_layers=2, savedmodel=False,
                                 image={"shape": [4, 4], "levels": [-2.0, 2.0]})
    permuted = make_model_folder(root, "permuted", event_dim=4, num_layers=2, savedmodel=False,
                                 permute=True)
    (root / "corrupt.keras").write_bytes(b"this is not a zip file")
    return {"tiny": (tiny, flow), "wide": (wide, wide_flow), "notrace": root / "notrace",
            "planar": planar, "conditional": conditional, "pictures": pictures,
            "permuted": permuted,
            "corrupt": root / "corrupt.keras"}


@pytest.fixture(scope="module")
def window(qapp, models, tmp_path_factory):
    # `models` first: it imports TensorFlow on this thread (see `started_window`).
    w = started_window(qapp, tmp_path_factory.mktemp("viz_settings"))
    yield w
    w.close()


def open_model(qtbot, window, path):
    with qtbot.waitSignal(window.model_opened, timeout=TIMEOUT_MS) as blocker:
        assert window.open_path(path)
    return blocker.args[0]


def show_ready(qtbot, window, name):
    view = window.show_view(name)
    qtbot.waitUntil(view.is_ready, timeout=TIMEOUT_MS)
    return view


@pytest.fixture
def tiny(qtbot, window, models):
    folder, flow = models["tiny"]
    if window.info is None or window.info["name"] != "tiny":
        open_model(qtbot, window, folder)
    return flow


def test_density_view_draws_the_flows_log_prob(qtbot, window, tiny):
    view = window.show_view("density")
    view.resolution.setCurrentIndex(0)                       # 64 x 64
    qtbot.waitUntil(lambda: view.is_ready() and view.image.shape == (64, 64),
                    timeout=TIMEOUT_MS)
    xy = geometry.grid_points(view.region, 64)
    np.testing.assert_allclose(view.image.ravel(), tiny.log_prob(xy).numpy(), rtol=1e-5, atol=1e-4)
    first = view.region
    view.view_box.setRange(xRange=(-1, 0.5), yRange=(-0.5, 1.0), padding=0)    # pan + zoom
    qtbot.waitUntil(lambda: view.is_ready() and view.region != first, timeout=TIMEOUT_MS)
    x0, x1, _, _ = view.visible_region()    # the grid sits on its pixel lattice
    assert abs(view.region[0] - x0) <= (x1 - x0) / 64 / 2 * 1.0001
    # A pan at the same zoom reuses the pixels both grids share; the image is still exact.
    zoomed = view.region
    qtbot.wait(density_view.SETTLE_MS + 50)                  # a pan, not a drag
    view.view_box.setRange(xRange=(-0.9, 0.6), yRange=(-0.45, 1.05), padding=0)
    qtbot.waitUntil(lambda: view.is_ready() and view.region != zoomed, timeout=TIMEOUT_MS)
    assert view.left.value["reused"] >= 50 * 60
    xy = geometry.grid_points(view.region, 64)
    np.testing.assert_allclose(view.image.ravel(), tiny.log_prob(xy).numpy(), rtol=1e-5, atol=1e-4)
    assert view.left.title == "flow: log p(x)" and view.bar.axis.labelText == "log p(x)"
    view.scale.setCurrentIndex(1)                            # p(x)
    view.contours.setChecked(True)
    assert view.contour_item.connect_array.size > 0, "contours are drawn"
    shown = view.image_item.image
    np.testing.assert_allclose(shown, np.exp(view.image), rtol=1e-5, atol=1e-7)
    assert view.left.title == "flow: p(x)" and view.bar.axis.labelText == "p(x)"
    view.scale.setCurrentIndex(0)


def test_heatmap_and_grid_draw_as_pyqtgraph_would_in_faster_forms(qtbot, window, tiny):
    import pyqtgraph as pg
    from visualizer.items import GRID_Z, GridAxisItem
    view = show_ready(qtbot, window, "density")
    # The heatmap: pyqtgraph's colours, kept as 32-bit RGB instead of an indexed image.
    item = view.image_item
    item.render()
    assert item.qimage.format() == QtGui.QImage.Format.Format_RGB32
    plain = pg.ImageItem(axisOrder="row-major")
    plain.setLookupTable(item.lut)
    plain.setImage(item.image, autoLevels=False, levels=item.levels)
    plain.render()
    assert plain.qimage.format() == QtGui.QImage.Format.Format_Indexed8
    assert plain.qimage.convertToFormat(QtGui.QImage.Format.Format_RGB32) == item.qimage
    # The grid: pyqtgraph's lines, made opaque over the background, behind the plot.
    axis = view.plot.getPlotItem().getAxis("bottom")
    assert isinstance(axis, GridAxisItem) and axis.grid is not False
    assert axis.zValue() == GRID_Z < view.view_box.zValue()
    picture = QtGui.QPicture()
    painter = QtGui.QPainter(picture)
    try:
        ours = axis.generateDrawSpecs(painter)[1]
        theirs = pg.AxisItem.generateDrawSpecs(axis, painter)[1]
    finally:
        painter.end()
    assert len(ours) == len(theirs) > 3
    bg = QtGui.QColor(theme.COLORS["base"])
    assert any(pen.color().alpha() < 255 for pen, _, _ in theirs)
    for (pen, a1, a2), (their_pen, b1, b2) in zip(ours, theirs):
        c, alpha = their_pen.color(), their_pen.color().alphaF()
        assert (a1, a2) == (b1, b2) and pen.color().alpha() == 255
        for got, fg, back in ((pen.color().redF(), c.redF(), bg.redF()),
                              (pen.color().greenF(), c.greenF(), bg.greenF()),
                              (pen.color().blueF(), c.blueF(), bg.blueF())):
            assert got == pytest.approx(alpha * fg + (1 - alpha) * back, abs=1 / 255)


def test_density_view_draws_a_coarse_preview_then_the_exact_heatmap(qtbot, window, tiny,
                                                                   monkeypatch):
    monkeypatch.setattr(density_view, "PREVIEW_UNDER_S", 0.0)   # every exact pass is "slow"
    view = window.show_view("density")
    view.resolution.setCurrentIndex(1)                       # 128 x 128
    qtbot.waitUntil(view.is_ready, timeout=TIMEOUT_MS)
    shapes = []
    view.frame_drawn.connect(lambda: shapes.append(view.image.shape))
    view.view_box.setRange(xRange=(-1.2, 0.4), yRange=(-0.6, 1.0), padding=0)
    qtbot.waitUntil(lambda: view.is_ready() and view.image.shape == (128, 128),
                    timeout=TIMEOUT_MS)
    assert shapes[0] == (64, 64) and shapes[-1] == (128, 128)
    xy = geometry.grid_points(view.region, 128)
    np.testing.assert_allclose(view.image.ravel(), tiny.log_prob(xy).numpy(), rtol=1e-5,
                               atol=1e-4)
    # When the exact pass is quick, a single change skips the preview.
    monkeypatch.setattr(density_view, "PREVIEW_UNDER_S", 60.0)
    for _ in range(100):            # until no frame comes (a loaded machine's came late,
        drawn = len(shapes)         # and the change then met a pass in flight: previewed)
        qtbot.wait(density_view.SETTLE_MS + 50)
        if view.is_ready() and len(shapes) == drawn:
            break
    shapes.clear()
    view.view_box.setRange(xRange=(-1.0, 0.6), yRange=(-0.6, 1.0), padding=0)
    qtbot.waitUntil(lambda: view.is_ready() and len(shapes) > 0, timeout=TIMEOUT_MS)
    # the change's first frame is the exact one (in two full CI runs a second range
    # change followed within SETTLE_MS, a layout's, and drew a preview after it)
    assert shapes[0] == (128, 128)
    view.frame_drawn.disconnect()
    view.resolution.setCurrentIndex(0)


def test_samples_view_draws_the_flows_samples(qtbot, window, tiny):
    view = window.show_view("samples")
    view.count.setValue(500)
    view.temperature.setValue(0.7)
    qtbot.waitUntil(lambda: view.is_ready() and len(view.points) == 500, timeout=TIMEOUT_MS)
    want = tiny.sample(500, seed=view.seed, temperature=0.7).numpy()
    np.testing.assert_allclose(view.points, want, atol=1e-4)
    np.testing.assert_allclose(view.cloud.points, want, atol=1e-4)
    before = view.seed
    frames = view.frames
    view.continuous.setChecked(True)
    qtbot.waitUntil(lambda: view.frames >= frames + 3, timeout=TIMEOUT_MS)
    assert view.seed >= before + 3, "continuous mode resamples with new seeds"
    assert window.fps() > 0
    # another tab, and back: the batch that arrived meanwhile was not followed by a
    # new one, and coming back restarts the chain
    window.show_view("density")
    qtbot.waitUntil(lambda: "samples" not in view._waiting, timeout=TIMEOUT_MS)
    qtbot.wait(100)
    frames = view.frames
    window.show_view("samples")
    qtbot.waitUntil(lambda: view.frames >= frames + 3, timeout=TIMEOUT_MS)
    view.continuous.setChecked(False)
    view.count.setValue(DEFAULT_COUNT)     # the window is the module's: set back what it had
    view.temperature.setValue(1.0)


def test_the_layer_strip_shares_the_height_with_the_plot_and_hides_when_short(qtbot,
                                                                                window, tiny):
    """The strip kept 182 pixels at every height: at the window's smallest the
    Layers plot was 40 pixels tall."""
    from visualizer.views.strip import STRIP_HEIGHT, STRIP_MIN_HEIGHT, THUMBNAIL
    view = show_ready(qtbot, window, "layers")
    size = window.size()
    try:
        seen = []
        for height in (840, 560, 380):
            window.resize(size.width(), height)
            for _ in range(3):                  # the layout, then the strip's own
                QtWidgets.QApplication.processEvents()
            seen.append((view.plot.height(), view.strip.isVisible(), view.strip.height()))
            if view.strip.isVisible():
                assert STRIP_MIN_HEIGHT <= view.strip.height() <= STRIP_HEIGHT
                assert view.plot.height() >= 140
                w, h = view.strip.thumbnail
                assert abs(w / h - THUMBNAIL[0] / THUMBNAIL[1]) < 0.02
                assert all(p.size().toTuple() == (w, h) for p in view.strip.plots)
                # the plots' scenes follow (a title wider than the plot widened it)
                assert all(p.getPlotItem().geometry().width() <= w for p in view.strip.plots)
        (_, shown_tall, strip_tall), (_, shown_mid, strip_mid), (_, shown_low, strip_low) = seen
        assert shown_tall and strip_tall == STRIP_HEIGHT
        assert shown_mid and STRIP_MIN_HEIGHT < strip_mid < STRIP_HEIGHT
        assert shown_low and strip_low == STRIP_MIN_HEIGHT
        # shorter than this window goes (a flow with a note above its plot): hidden
        view.strip.fit(STRIP_MIN_HEIGHT + 139)
        assert not view.strip.isVisibleTo(view)
        view.strip.fit(STRIP_MIN_HEIGHT + 140)
        assert view.strip.isVisibleTo(view)
    finally:
        window.resize(size)
    for _ in range(3):
        QtWidgets.QApplication.processEvents()
    assert view.strip.isVisible() and view.strip.height() == STRIP_HEIGHT


def test_layers_view_draws_the_trace_and_the_slider_moves_it(qtbot, window, tiny):
    view = show_ready(qtbot, window, "layers")
    grid, connect, cloud = view._inputs()
    states = np.stack(tiny.trace(np.concatenate([grid, cloud])))
    np.testing.assert_allclose(view.cloud_states, states[:, len(grid):], atol=1e-4)
    np.testing.assert_allclose(view.grid_states, states[:, :len(grid)], atol=1e-4)
    assert len(view.strip.plots) == 4
    # thumbnail titles fit their plot (long layer names end in an ellipsis); the
    # tooltip holds the whole name
    names = view.state_names()
    assert [p.toolTip() for p in view.strip.plots] == names
    font = QtGui.QFont()
    font.setPointSize(8)
    metrics = QtGui.QFontMetrics(font)
    for plot, name in zip(view.strip.plots, names):
        title = plot.getPlotItem().titleLabel.text
        shown = title.split(">", 1)[1].rsplit("<", 1)[0]
        assert metrics.horizontalAdvance(shown) <= 160
        assert shown == name or (shown.endswith("…") and name.startswith(shown[:-1]))
    assert any(shown != name for shown, name in zip(
        [p.getPlotItem().titleLabel.text for p in view.strip.plots], names))
    drawn = []
    for k in range(4):
        view.set_layer(k)
        drawn.append(view.cloud.points.copy())
        np.testing.assert_allclose(drawn[-1], states[k, len(grid):], atol=1e-4)
        check_range_holds_the_grid(view, view.grid_states[k])
    assert all(np.abs(a - b).max() > 1e-3 for a, b in zip(drawn, drawn[1:]))
    view.set_layer(1.5)                                      # halfway blend
    np.testing.assert_allclose(view.cloud.points, 0.5 * (drawn[1] + drawn[2]), atol=1e-4)
    check_range_holds_the_grid(view, 0.5 * (view.grid_states[1] + view.grid_states[2]),
                               margin=None)         # (the two states' ranges, blended)
    thumbnails = list(view.strip.plots)
    view.direction.setCurrentIndex(1)                        # data -> base
    qtbot.waitUntil(view.is_ready, timeout=TIMEOUT_MS)
    inv = np.stack(tiny.trace_inverse(view._inputs()[2]))
    np.testing.assert_allclose(view.cloud_states, inv, atol=1e-4)
    # as many states: the same thumbnails, given the inverse's states and names
    from visualizer.views.strip import STRIP_POINTS
    assert view.strip.plots == thumbnails
    every = max(1, inv.shape[1] // STRIP_POINTS)
    for plot, items, state, name in zip(view.strip.plots, view.strip._items, inv,
                                        view.state_names()):
        np.testing.assert_allclose(items[1].points, state[::every], atol=1e-4)
        assert plot.toolTip() == name
    view.set_layer(3)
    check_range_holds_the_grid(view, view.grid_states[3])
    frames = view.frames
    view.toggle_play()
    qtbot.waitUntil(lambda: view.frames >= frames + 5, timeout=10_000)
    view.toggle_play()
    view.direction.setCurrentIndex(0)
    qtbot.waitUntil(view.is_ready, timeout=TIMEOUT_MS)


def check_range_holds_the_grid(view, grid, margin=0.1):
    """The layers plot shows all of `grid` [N, 2], with a small margin (the shorter side
    of the view at most `1 + 2 * margin` times the grid's longer extent)."""
    (x0, x1), (y0, y1) = view.plot.getPlotItem().getViewBox().viewRange()
    lo, hi = grid.min(0), grid.max(0)
    assert x0 <= lo[0] and hi[0] <= x1 and y0 <= lo[1] and hi[1] <= y1, \
        ((x0, x1, y0, y1), lo, hi)
    if margin is not None:
        assert min(x1 - x0, y1 - y0) <= (1 + 2 * margin) * (hi - lo).max(), \
            ((x0, x1, y0, y1), lo, hi)


def test_space_plays_the_layers_only_where_they_are_shown(qtbot, window, tiny):
    """Space is Layers ▸ Play / Pause while the Layers view is shown, and a focused
    control that acts on Space (a check box, a drop-down) keeps it."""
    layers = window.views["layers"]
    samples = show_ready(qtbot, window, "samples")
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    box = samples.show_data
    box.setFocus()
    before = box.isChecked()
    qtbot.keyClick(box, QtCore.Qt.Key.Key_Space)
    assert box.isChecked() != before and not layers.play_button.isChecked()
    box.setChecked(before)
    show_ready(qtbot, window, "layers")
    layers.plot.setFocus()
    qtbot.keyClick(layers.plot, QtCore.Qt.Key.Key_Space)
    assert layers.play_button.isChecked()
    qtbot.keyClick(layers.plot, QtCore.Qt.Key.Key_Space)
    assert not layers.play_button.isChecked()
    layers.direction.setFocus()                 # Space opens a focused drop-down
    qtbot.keyClick(layers.direction, QtCore.Qt.Key.Key_Space)
    qtbot.waitUntil(layers.direction.view().isVisible, timeout=5000)
    layers.direction.hidePopup()
    assert not layers.play_button.isChecked()
    layers.set_layer(0)                         # (where playing left it)
    qtbot.keyClick(layers.plot, QtCore.Qt.Key.Key_BracketRight)     # ] : next layer
    assert layers.position == 1
    window.show_view("density")                 # elsewhere the Layers keys do nothing
    window.views["density"].plot.setFocus()
    qtbot.keyClick(window.views["density"].plot, QtCore.Qt.Key.Key_BracketRight)
    qtbot.keyClick(window.views["density"].plot, QtCore.Qt.Key.Key_Space)
    assert layers.position == 1 and not layers.play_button.isChecked()
    layers.set_layer(0)


def test_inspector_shows_the_points_numbers(qtbot, window, tiny):
    view = show_ready(qtbot, window, "inspector")
    x = np.array([0.3, -0.2], np.float32)
    view.inspect(x)
    qtbot.waitUntil(lambda: view.is_ready() and np.allclose(view.details["x"], x),
                    timeout=TIMEOUT_MS)
    d = view.details
    z = tiny.inverse(x[None]).numpy()[0]
    np.testing.assert_allclose(d["z"], z, atol=1e-5)
    assert d["log_p0"] == pytest.approx(float(tiny.base_log_prob(z[None])[0]), abs=1e-4)
    assert d["log_prob"] == pytest.approx(float(tiny.log_prob(x[None])[0]), abs=1e-5)
    _, log_dets = tiny.trace_inverse(x[None], return_log_dets=True)
    np.testing.assert_allclose(d["log_dets"], np.stack(log_dets)[:, 0], atol=1e-5)
    texts = [view.table.item(i, 1).text() for i in range(view.table.rowCount())]
    assert texts[-1] == f"{d['log_prob']:+.5f}"
    assert view.table.rowCount() == 3 + 3 + 2


def test_image_shaped_flow_samples_are_drawn_as_pictures(qtbot, window, models):
    from visualizer.views.samples import IMAGE_GRID
    folder, flow = models["pictures"]
    open_model(qtbot, window, folder)
    view = window.show_view("samples")
    assert view.as_images.isVisibleTo(view) and view.as_images.isChecked()  # the manifest says so
    qtbot.waitUntil(lambda: view.is_ready() and view.points is not None, timeout=TIMEOUT_MS)
    assert view.images_shown() and view.image_item.isVisible() and not view.cloud.isVisible()
    drawn = view.drawn
    # (float32 rounding of another evaluation path: one value in 160,000 was 7.6e-5 off)
    np.testing.assert_allclose(view.points, flow.sample(len(view.points), seed=drawn["seed"],
                                                        temperature=drawn["temperature"]),
                               rtol=1e-4, atol=1e-4)
    assert view.show_data.isChecked()                        # the data sample beside them
    data = geometry.tile_images(window.info["reference"][:IMAGE_GRID], (4, 4), columns=10)
    expected = geometry.tile_images(view.points[:IMAGE_GRID], (4, 4))
    np.testing.assert_array_equal(view.image_item.image, geometry.side_by_side(expected, data, gap=4))
    assert "training data" in view.plot.getPlotItem().titleLabel.text
    view.show_data.setChecked(False)
    np.testing.assert_array_equal(view.image_item.image, expected)
    # clicking a picture inspects that sample
    H = expected.shape[0]
    k = view.sample_at(1 * 5 + 2.5, H - (1 * 5 + 2.5))        # row 1, column 1: sample 11
    assert k == 11
    scene = view.plot.getPlotItem().getViewBox().mapViewToScene(
        QtCore.QPointF(1 * 5 + 2.5, H - (1 * 5 + 2.5)))
    qtbot.mouseClick(view.plot.viewport(), QtCore.Qt.MouseButton.LeftButton,
                     pos=view.plot.mapFromScene(scene))
    inspector = window.current_view()
    assert inspector.name == "inspector"
    qtbot.waitUntil(lambda: inspector.is_ready() and inspector.details is not None
                    and np.allclose(inspector.details["x"], view.points[k]), timeout=TIMEOUT_MS)
    assert inspector.details["log_prob"] == pytest.approx(
        float(flow.log_prob(view.points[k:k + 1])[0]), abs=1e-4)
    # it draws x and z as pictures (z from -3 black to 3 white on the picture's levels)
    assert inspector.images_shown() and inspector.picture_item.isVisible()
    assert not inspector.backdrop.isVisible() and not window.dock.isVisible()
    z = flow.inverse(view.points[k:k + 1]).numpy()[0]
    drawn = inspector.picture_item.image[::-1]                # top row first
    np.testing.assert_allclose(drawn[:4, :4], view.points[k].reshape(4, 4), atol=1e-5)
    np.testing.assert_allclose(drawn[:4, 6:10], (-2 + (np.clip(z, -3, 3) + 3) / 6 * 4)
                               .reshape(4, 4), atol=1e-4)
    view = window.show_view("samples")
    assert tuple(view.image_item.levels) == (-2.0, 2.0)
    assert "4×4 pixels" in view.seed_label.text()
    frames = view.frames
    view.resample()                                          # a new grid of pictures
    qtbot.waitUntil(lambda: view.frames > frames and view.is_ready(), timeout=TIMEOUT_MS)
    assert not np.array_equal(view.image_item.image, expected)
    assert not window.dock.isVisible(), "no dimensions to choose among pictures"
    view.as_images.setChecked(False)                         # back to the scatter
    assert view.cloud.isVisible() and not view.image_item.isVisible()
    assert window.dock.isVisible()
    np.testing.assert_allclose(view.cloud.points, window.projection.project(view.points))
    n = len(view.points)                                     # the label says the scatter's
    assert view.seed_label.text().endswith(f"· {n:,} samples"), view.seed_label.text()
    view.as_images.setChecked(True)
    assert view.image_item.isVisible()
    assert view.seed_label.text().endswith(f"the first {min(n, 100)} of {n:,} samples, "
                                           f"4×4 pixels"), view.seed_label.text()
    # the layers view: the first samples as pictures after each layer
    from visualizer.views.layers import IMAGE_SAMPLES, STRIP_IMAGES
    layers = show_ready(qtbot, window, "layers")
    assert layers.images_shown() and layers.image_item.isVisible()
    grid, connect, cloud = layers._inputs()
    states = np.stack(flow.trace(cloud[:IMAGE_SAMPLES]))
    np.testing.assert_allclose(layers.image_states, states, rtol=1e-4, atol=1e-4)
    for k in (0, 2):
        layers.set_layer(k)
        np.testing.assert_allclose(layers.image_item.image,
                                   geometry.tile_images(layers.image_states[k], (4, 4)))
    layers.set_layer(1.5)
    np.testing.assert_allclose(layers.image_item.image, geometry.tile_images(
        0.5 * (layers.image_states[1] + layers.image_states[2]), (4, 4)), atol=1e-6)
    thumbnails = [[i for i in p.getPlotItem().items if i.__class__.__name__ == "HeatmapItem"]
                  for p in layers.strip.plots]
    assert all(len(t) == 1 for t in thumbnails) and len(thumbnails) == 3
    np.testing.assert_array_equal(thumbnails[2][0].image, geometry.tile_images(
        layers.image_states[2][:STRIP_IMAGES], (4, 4)))
    data = layers.export_data()
    np.testing.assert_array_equal(data["image_states"], layers.image_states)
    assert list(data["image_shape"]) == [4, 4]
    layers.as_images.setChecked(False)                     # the grid and cloud again
    assert layers.cloud.isVisible() and not layers.image_item.isVisible()
    layers.set_layer(1)
    np.testing.assert_allclose(layers.cloud.points, layers.cloud_states[1])
    layers.as_images.setChecked(True)
    # a 2-D flow has no pictures to show
    open_model(qtbot, window, models["tiny"][0])
    assert not view.as_images.isVisibleTo(view) and not view.images_shown()
    assert not layers.as_images.isVisibleTo(layers) and not layers.images_shown()


def test_each_view_exports_the_arrays_it_draws(qtbot, window, tiny, tmp_path):
    for name in ("density", "samples", "layers", "inspector"):
        view = show_ready(qtbot, window, name)
        path = tmp_path / f"{name}.npz"
        assert window.save_view_data(path)
        with np.load(path, allow_pickle=False) as data:
            assert str(data["view"]) == name and str(data["model"]) == window.info["path"]
            assert list(data["dims"]) == [0, 1]
            # the Samples view's scatter is of every sample's two coordinates: none held
            assert (data["held"].shape == (2,)) if name != "samples" else "held" not in data
            if name == "density":
                np.testing.assert_array_equal(data["log_prob"], view.image)
                np.testing.assert_array_equal(data["region"], view.region)
            elif name == "samples":
                np.testing.assert_array_equal(data["samples"], view.points)
                assert int(data["seed"]) == view.drawn["seed"]
            elif name == "layers":
                np.testing.assert_array_equal(data["grid_states"], view.grid_states)
                np.testing.assert_array_equal(data["cloud_states"], view.cloud_states)
                assert list(data["state_names"]) == view.state_names()
                assert data["grid_connect"].dtype == bool
            else:
                assert float(data["log_prob"]) == pytest.approx(view.details["log_prob"])
                np.testing.assert_array_equal(data["log_dets"], view.details["log_dets"])
                assert list(data["layer_names"]) == window.info["layer_names"]


def test_export_dialogs_say_when_the_file_cannot_be_written(qtbot, window, tiny, tmp_path,
                                                           monkeypatch):
    from PySide6 import QtWidgets
    show_ready(qtbot, window, "density")
    target = []
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(target[-1]), "")))
    failures = []
    window.failed.connect(failures.append)
    try:
        target.append(tmp_path / "view.png")
        window.export_dialog()
        assert failures == [] and QtGui.QImage(str(target[-1])).width() > 100
        for export_view, name in ((window.export_dialog, "view.png"),
                                  (window.export_data_dialog, "view.npz")):
            target.append(tmp_path / "missing" / name)       # a folder that does not exist
            export_view()
            assert failures[-1].startswith("Could not save the ")
            assert str(target[-1]) in failures[-1] and window.error_box.isVisible()
            window.error_box.close()
        assert len(failures) == 2
        # a name typed without the format's suffix gets it (one of another format too)
        for export_view, name, written in ((window.export_dialog, "mypicture", "mypicture.png"),
                                           (window.export_dialog, "p.bmp", "p.bmp.png"),
                                           (window.export_dialog, "p.JPG", "p.JPG"),
                                           (window.export_data_dialog, "mydata", "mydata.npz")):
            target.append(tmp_path / name)
            export_view()
            assert (tmp_path / written).is_file() and not (
                written != name and (tmp_path / name).exists()), name
        assert QtGui.QImage(str(tmp_path / "p.bmp.png")).format() != QtGui.QImage.Format.Format_Invalid
        assert len(failures) == 2
    finally:
        window.failed.disconnect(failures.append)


def test_corrupt_file_shows_the_error_dialog_and_keeps_the_model(qtbot, window, tiny, models,
                                                                  monkeypatch):
    before = window.info
    with qtbot.waitSignal(window.failed, timeout=TIMEOUT_MS) as blocker:
        window.open_path(models["corrupt"])
    assert "Could not open" in blocker.args[0]
    assert window.error_box.isVisible() and window.error_box.text()
    window.error_box.close()
    assert window.info is before
    with qtbot.waitSignal(window.failed, timeout=5000):
        window.open_path(models["corrupt"].parent / "missing.keras")
    assert "no such file" in window.error_box.text()
    window.error_box.close()
    def unforeseen(path, prefer_keras=None):
        raise TypeError("a case the path checks miss")
    monkeypatch.setattr(paths, "resolve", unforeseen)
    with qtbot.waitSignal(window.failed, timeout=5000):
        assert window.open_path(models["corrupt"]) is False
    assert window.error_box.text() == f"{models['corrupt']}: TypeError: a case the path checks miss"
    window.error_box.close()
    monkeypatch.undo()
    view = window.show_view("samples")
    frames = view.frames
    view.resample()                                           # the app keeps working
    qtbot.waitUntil(lambda: view.frames > frames and view.is_ready(), timeout=TIMEOUT_MS)


CLOSE_DURING_A_COMPUTATION = """
import sys, time
import tensorflow as tf
from PySide6 import QtCore, QtWidgets
from visualizer import compute, headless
from visualizer.window import MainWindow
app = QtWidgets.QApplication(["close"])
settings = QtCore.QSettings(sys.argv[2], QtCore.QSettings.Format.IniFormat)
w = MainWindow(settings=settings, warm_up=False, eval_mode="eager", remember=False)
w.show()
headless.open_model(w, sys.argv[1])
started, delivered = [], []

def slow(backend):
    started.append(True)
    end = time.perf_counter() + 1.5
    while time.perf_counter() < end:
        tf.linalg.matmul(tf.ones((200, 200)), tf.ones((200, 200)))
    print("computation finished", flush=True)

compute.slow = slow
headless.wait_for(w.worker.thread.idle, 60)       # the view's own requests answered
app.processEvents()
w.worker.result.connect(lambda r: delivered.append(r.kind))
w.submit("probe", "slow")
headless.wait_for(lambda: started, 60)
t = time.perf_counter()
w.close()
print(f"closed in {time.perf_counter() - t:.3f} s, visible {w.isVisible()}", flush=True)
app.processEvents()
print(f"delivered after close: {delivered}", flush=True)
"""


def test_closing_during_a_computation_is_prompt_and_the_exit_waits_for_it(models, tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "TF_CPP_MIN_LOG_LEVEL": "3"}
    # The SavedModel: it opens without importing kerasflows (1.5 s less in the child).
    proc = subprocess.run([sys.executable, "-c", CLOSE_DURING_A_COMPUTATION,
                           str(models["tiny"][0] / "saved_model"), str(tmp_path / "s.ini")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("closed in "), lines        # before the computation ended
    assert float(lines[0].split()[2]) < 0.5 and lines[0].endswith("visible False"), lines
    assert lines[1:] == ["delivered after close: []",     # then the exit waited for it
                         "computation finished"], lines
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def test_screenshots_are_non_blank_and_differ_between_layers(qtbot, window, tiny, tmp_path):
    images = {}
    for name in headless.VIEW_NAMES:
        path = headless.render_view(window, name, tmp_path / f"{name}.png")
        images[name] = QtGui.QImage(str(path))
    for k in (0, 3):
        path = headless.render_view(window, "layers", tmp_path / f"layer{k}.png", layer=k)
        images[k] = QtGui.QImage(str(path))
    arrays = {k: image_array(img) for k, img in images.items()}
    for name, a in arrays.items():
        assert a.shape[:2] == (window.height(), window.width())
        assert a.std() > 10, f"{name} screenshot is blank"
        assert len(np.unique(a.view(np.uint32))) > 200, f"{name} has too few colours"
    assert np.abs(arrays[0].astype(int) - arrays[3].astype(int)).mean() > 1.0
    assert window.save_view_png(tmp_path / "export.png")
    assert QtGui.QImage(str(tmp_path / "export.png")).width() > 100


@contextlib.contextmanager
def file_size_limit(limit):
    """Writes past `limit` bytes fail with EFBIG (File too large): a full disk, as the
    write sees it."""
    resource = pytest.importorskip("resource")
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, old_handler)


def choose_save_path(monkeypatch, path):
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        staticmethod(lambda *args, **kwargs: (str(path), "")))


def test_an_export_that_fails_keeps_the_file_it_would_replace(qtbot, window, tiny, tmp_path,
                                                              monkeypatch):
    show_ready(qtbot, window, "density")
    data, image, shot = tmp_path / "keep.npz", tmp_path / "keep.png", tmp_path / "shot.png"
    window.save_view_data(data)
    window.save_view_png(image)
    headless.render_view(window, "density", shot)
    before = {p: p.read_bytes() for p in (data, image, shot)}
    for path, dialog in ((data, window.export_data_dialog), (image, window.export_dialog)):
        choose_save_path(monkeypatch, path)
        with qtbot.waitSignal(window.failed, timeout=5000) as blocker, \
                file_size_limit(len(before[path]) // 2):
            dialog()
        window.error_box.close()
        assert path.read_bytes() == before[path]
        assert (f"{path} could not be written (File too large); the file already there "
                "is kept") in blocker.args[0]
    with pytest.raises(headless.HeadlessError, match="File too large"), \
            file_size_limit(len(before[shot]) // 2):
        headless.render_view(window, "density", shot)           # --screenshot
    assert shot.read_bytes() == before[shot]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.npz", "keep.png", "shot.png"]


def test_exported_data_keeps_the_name_chosen(qtbot, window, tiny, tmp_path, monkeypatch):
    show_ready(qtbot, window, "density")
    for name in ("Data.NPZ", "arrays"):             # np.savez would add .npz to these
        assert window.save_view_data(tmp_path / name)
        with np.load(tmp_path / name, allow_pickle=False) as data:
            assert str(data["view"]) == "density"
    folder = tmp_path / "adir.npz"
    folder.mkdir()
    choose_save_path(monkeypatch, folder)
    with qtbot.waitSignal(window.failed, timeout=5000) as blocker:
        window.export_data_dialog()
    window.error_box.close()
    assert blocker.args[0] == (f"Could not save the data: {folder} could not be written "
                               "(Is a directory); nothing was written.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Data.NPZ", "adir.npz", "arrays"]


def image_array(image):
    image = image.convertToFormat(QtGui.QImage.Format.Format_RGBA8888)
    ptr = image.constBits()
    return np.frombuffer(ptr, np.uint8).reshape(image.height(), image.width(), 4).copy()


def test_savedmodel_without_trace_shows_a_message_in_the_layers_view(qtbot, window, models):
    info = open_model(qtbot, window, models["notrace"])
    assert info["kind"] == "savedmodel" and not info["has_trace"]
    view = show_ready(qtbot, window, "layers")
    assert view.message.isVisible() and "no trace" in view.message.text()
    density = show_ready(qtbot, window, "density")
    flow = models["tiny"][1]
    xy = geometry.grid_points(density.region, density.image.shape[0])
    np.testing.assert_allclose(density.image.ravel(), flow.log_prob(xy).numpy(), rtol=1e-5,
                               atol=1e-4)
    assert str(models["notrace"]) in window._recent()


def test_flow_with_more_than_two_dims_shows_chosen_dims_at_held_values(qtbot, window, models):
    folder, flow = models["wide"]
    info = open_model(qtbot, window, folder)
    assert info["event_dim"] == 4 and window.dock.isVisible()
    window.panel.set_dims(3, 1)
    window.panel.set_held(0, 0.25)
    window.panel.set_held(2, -0.5)
    p = window.projection
    assert p.dims == (3, 1) and p.held[0] == pytest.approx(0.25) and p.held[2] == -0.5
    label = window.panel.value_form.labelForField(window.panel.spins[2]).text()
    assert label == "x3 held at"
    view = window.show_view("density")
    qtbot.waitUntil(lambda: view.is_ready() and view.plot.getPlotItem().getAxis("bottom")
                    .labelText == "x4", timeout=TIMEOUT_MS)
    res = view.image.shape[0]
    pts = geometry.grid_points(view.region, res)
    full = np.tile(np.array([0.25, 0, -0.5, 0], np.float32), (len(pts), 1))
    full[:, 3], full[:, 1] = pts[:, 0], pts[:, 1]
    np.testing.assert_allclose(view.image.ravel(), flow.log_prob(full).numpy(), rtol=1e-5, atol=1e-4)
    samples = show_ready(qtbot, window, "samples")
    np.testing.assert_allclose(samples.cloud.points, samples.points[:, [3, 1]], atol=1e-6)
    # the horizontal axis picks what the vertical one shows: the two swap
    window.panel.x_dim.setCurrentIndex(1)
    assert window.projection.dims == (1, 3)
    assert (window.panel.x_dim.currentText(), window.panel.y_dim.currentText()) == ("x2", "x4")
    np.testing.assert_allclose(samples.cloud.points, samples.points[:, [1, 3]], atol=1e-6)
    assert samples.plot.getPlotItem().getAxis("left").labelText == "x4"
    window.panel.y_dim.setCurrentIndex(1)                    # and the other way round
    assert window.projection.dims == (3, 1) and window.panel.x_dim.currentText() == "x4"
    with pytest.raises(ValueError, match="different coordinates"):
        window.panel.set_dims(2, 2)


def test_data_columns_go_by_the_names_the_model_was_trained_with(qtbot, window, models,
                                                                  tmp_path):
    # a .keras file whose training record names its columns (the header of the CSV
    # file `kerasflows train` read): the pickers, the held values' labels and the axes
    # use the names; base coordinates keep z1, z2, ...
    named = tmp_path / "named.keras"
    shutil.copy(models["wide"][0] / "flow.keras", named)
    names = ["height", "weight", "age", "income"]
    write_training_record(named, {"columns": names})
    info = open_model(qtbot, window, named)
    assert info["data_names"] == names
    panel = window.panel
    assert [panel.x_dim.itemText(i) for i in range(4)] == names
    panel.set_dims(3, 1)
    assert panel.value_form.labelForField(panel.spins[2]).text() == "age held at"
    assert panel.value_form.labelForField(panel.spins[3]).text() == "income shown"
    view = window.show_view("density")
    qtbot.waitUntil(lambda: view.is_ready() and view.plot.getPlotItem().getAxis("bottom")
                    .labelText == "income", timeout=TIMEOUT_MS)
    assert view.plot.getPlotItem().getAxis("left").labelText == "weight"
    layers = show_ready(qtbot, window, "layers")
    bottom = layers.plot.getPlotItem().getAxis("bottom").labelText
    assert bottom.startswith("z4 → income"), bottom
    inspector = show_ready(qtbot, window, "inspector")
    inspector.inspect(np.array([0.1, 0.2, -0.3, 0.4], np.float32))
    qtbot.waitUntil(lambda: inspector.is_ready() and inspector.details is not None
                    and inspector.table.rowCount() > 0, timeout=TIMEOUT_MS)
    assert inspector.table.item(0, 0).text() == "x = (height, weight, age, income)"
    # names that do not fit (another count) are not used
    bad = tmp_path / "bad.keras"
    shutil.copy(models["wide"][0] / "flow.keras", bad)
    write_training_record(bad, {"columns": ["a", "b"]})
    assert open_model(qtbot, window, bad)["data_names"] is None
    assert window.panel.x_dim.itemText(0) == "x1"


def test_conditional_flow_is_shown_at_the_context_of_the_context_panel(qtbot, window, models):
    folder, flow = models["conditional"]
    with qtbot.waitSignal(window.model_opened, timeout=TIMEOUT_MS) as blocker:
        assert window.open_path(folder, context=[0.5, -0.5])
    info = blocker.args[0]
    assert info["context_dim"] == 2 and window.context_dock.isVisible()
    assert [s.value() for s in window.context_panel.spins] == [0.5, -0.5]
    assert "context C = 2" in window.model_label.text()

    def rows(c, n):
        return np.tile(np.asarray(c, np.float32), (n, 1))

    view = window.show_view("density")
    for c in ([0.5, -0.5], [-1.0, -0.5]):
        if c[0] != 0.5:
            window.context_panel.set_value(0, c[0])          # the user edits c1
        qtbot.waitUntil(lambda: view.is_ready() and view.left.value is not None
                        and view.left.value["context"] == c, timeout=TIMEOUT_MS)
        xy = geometry.grid_points(view.region, view.image.shape[0])
        np.testing.assert_allclose(view.image.ravel(),
                                   flow.log_prob(xy, context=rows(c, len(xy))).numpy(),
                                   rtol=1e-5, atol=1e-4)
        # named as the Context panel names them (it said "c = (0.5, -0.5)")
        assert view.left.title == "flow: log p(x | c), " + ", ".join(
            f"c{k + 1} = {v:g}" for k, v in enumerate(c))
        assert view.bar.axis.labelText == "log p(x | c)"
    window.context_panel.sliders[1].setValue(0)             # drag c2 to its slider's left end
    qtbot.waitUntil(lambda: view.is_ready() and view.left.value["context"] == [-1.0, -3.5],
                    timeout=TIMEOUT_MS)                      # the opening -0.5, minus 3
    xy = geometry.grid_points(view.region, view.image.shape[0])
    np.testing.assert_allclose(view.image.ravel(),
                               flow.log_prob(xy, context=rows([-1.0, -3.5], len(xy))).numpy(),
                               rtol=1e-5, atol=1e-4)
    window.context_panel.set_value(1, -0.5)
    samples = show_ready(qtbot, window, "samples")
    T = samples.temperature.value()

    def drawn_at(c):
        return flow.sample(len(samples.points), context=rows(c, 1), seed=samples.seed,
                           temperature=T).numpy()

    np.testing.assert_allclose(samples.points, drawn_at([-1.0, -0.5]), atol=1e-4)
    window.context_panel.reset.click()                       # back to the opening context
    assert window.context.tolist() == [0.5, -0.5]
    qtbot.waitUntil(lambda: samples.is_ready(), timeout=TIMEOUT_MS)
    np.testing.assert_allclose(samples.points, drawn_at([0.5, -0.5]), atol=1e-4)
    inspector = show_ready(qtbot, window, "inspector")
    assert inspector.table.rowCount() > 0
    layers = show_ready(qtbot, window, "layers")
    layers.direction.setCurrentIndex(1)                      # data -> base
    window.context_panel.set_value(1, 1.5)                   # starts from samples of p(x | c)
    qtbot.waitUntil(lambda: layers.is_ready() and layers.reference_context is not None
                    and layers.reference_context.tolist() == [0.5, 1.5], timeout=TIMEOUT_MS)
    start = flow.sample(len(layers.cloud_states[0]), context=rows([0.5, 1.5], 1), seed=0)
    np.testing.assert_allclose(layers.cloud_states[0], start.numpy(), atol=1e-4)
    want = flow.trace_inverse(start, context=rows([0.5, 1.5], len(start)))
    np.testing.assert_allclose(layers.cloud_states[-1], want[-1].numpy(), atol=1e-4)
    layers.direction.setCurrentIndex(0)
    open_model(qtbot, window, models["tiny"][0])             # an unconditional flow: no panel
    assert window.context is None and not window.context_dock.isVisible()


def test_views_use_the_context_the_flow_opened_at(qtbot, window, models):
    folder, _ = models["conditional"]
    for context in ([20000.0, -0.5], [0.12345, -12345.678]):    # far out; 5 decimals
        with qtbot.waitSignal(window.model_opened, timeout=TIMEOUT_MS) as blocker:
            assert window.open_path(folder, context=context)
        want = np.asarray(context, np.float32)
        np.testing.assert_array_equal(blocker.args[0]["context"], want)
        np.testing.assert_array_equal(window.context, want)
        np.testing.assert_array_equal(window.context_panel.context(), want)


def test_opening_an_unconditional_flow_stops_a_playing_context(qtbot, window, models):
    open_model(qtbot, window, models["conditional"][0])
    panel = window.context_panel
    panel.plays[0].click()                                   # ▶ on c1
    qtbot.waitUntil(lambda: window.context[0] != 0.0, timeout=5000)
    open_model(qtbot, window, models["tiny"][0])             # an unconditional flow
    assert panel.playing is None and not panel.timer.isActive()
    assert not panel.plays[0].isChecked()
    panel.changed.emit(np.array([1.0, 2.0], np.float32))     # a context sent all the same
    assert window.context is None
    for name in ("density", "samples"):
        view = show_ready(qtbot, window, name)
        assert not view.message.isVisibleTo(view), view.message.text()


def test_context_panel_sliders_span_the_trained_range(qtbot):
    from visualizer.context import SLIDER_STEPS, ContextPanel
    panel = ContextPanel()
    qtbot.addWidget(panel)
    emitted = []
    panel.changed.connect(lambda c: emitted.append(c.tolist()))
    assert panel.set_model([2.5], ["radius"], [(1.0, 4.0)]).tolist() == [2.5]
    assert panel.form.labelForField(panel.spins[0].parentWidget()).text() == "radius"
    assert panel.sliders[0].value() == SLIDER_STEPS // 2
    assert "from 1 to 4 (the range the flow was trained on)" in panel.sliders[0].toolTip()
    panel.sliders[0].setValue(SLIDER_STEPS)
    assert emitted[-1] == [4.0]
    panel.set_value(0, 1.0)                                  # typing moves the slider
    assert emitted[-1] == [1.0] and panel.sliders[0].value() == 0
    assert not panel.warning.isVisibleTo(panel) and panel.outside_text() == ""
    panel.set_value(0, 9.0)                                  # beyond the range: allowed
    assert emitted[-1] == [9.0] and panel.sliders[0].value() == SLIDER_STEPS
    assert panel.warning.isVisibleTo(panel)                  # with a warning
    assert panel.warning.text() == ("Outside the range the flow was trained on: radius = 9 "
                                    "(trained on 1 to 4). What is drawn there is extrapolation.")
    panel.reset.click()
    assert emitted[-1] == [2.5] and panel.sliders[0].value() == SLIDER_STEPS // 2
    assert not panel.warning.isVisibleTo(panel)
    assert panel.set_model([50.0], ["radius"], [(1.0, 4.0)]).tolist() == [50.0]
    assert panel.warning.isVisibleTo(panel) and "radius = 50" in panel.outside_text()
    panel.set_model([50.0], ["radius"])                      # no trained range: no warning
    assert not panel.warning.isVisibleTo(panel)


def test_class_conditional_pictures_one_row_per_digit(qtbot, window):
    """saved_models/digits_label: "One row per digit" draws 10 samples at each label,
    from the same base noise; clicking one sets the context to its row's digit."""
    import kerasflows
    from visualizer.views.samples import MIN_SAMPLES, SWEEP_PER
    folder = paths.default_model_path().parent / "digits_label"
    # As many samples as there are pictures (100): 10,000 of 64 dimensions took 0.7 s,
    # twice.
    count = window.views["samples"].count.value()
    window.views["samples"].count.setValue(MIN_SAMPLES)
    open_model(qtbot, window, folder)
    view = show_ready(qtbot, window, "samples")
    assert view.images_shown() and view.by_context.isVisibleTo(view)
    assert view.by_context.text() == "One row per digit" and not view.by_context.isChecked()
    assert window.context.tolist() == [3.0]
    view.by_context.setChecked(True)
    qtbot.waitUntil(lambda: view.is_ready() and bool(view.drawn.get("sweep")),
                    timeout=TIMEOUT_MS)
    flow = kerasflows.load(folder)
    flow.eval_mode = "eager"        # three calls: tracing them took longer (1.3 s)
    assert view.points.shape == (10 * SWEEP_PER, 64)
    for digit in (0, 7):
        rows = view.points[digit * SWEEP_PER:(digit + 1) * SWEEP_PER]
        np.testing.assert_allclose(rows, flow.sample(
            SWEEP_PER, context=[[digit]], seed=view.drawn["seed"],
            temperature=view.drawn["temperature"]).numpy(), rtol=1e-4, atol=1e-4)
    expected = geometry.tile_images(view.points, (8, 8), SWEEP_PER)
    np.testing.assert_array_equal(view.image_item.image, expected)
    assert "one row per digit: 0 (top) to 9" in view.plot.getPlotItem().titleLabel.text
    assert "10 samples at each digit, 8×8 pixels" in view.seed_label.text()
    data = view.export_data()
    assert data["sweep_coordinate"] == 0 and data["sweep_values"].tolist() == list(range(10))
    # the 3rd picture of row 7 (from the top): sample 72, drawn for a seven
    H = expected.shape[0]
    x, y = 2 * 9 + 4, H - (7 * 9 + 4)
    assert view.sample_at(x, y) == 7 * SWEEP_PER + 2
    scene = view.plot.getPlotItem().getViewBox().mapViewToScene(QtCore.QPointF(x, y))
    qtbot.mouseClick(view.plot.viewport(), QtCore.Qt.MouseButton.LeftButton,
                     pos=view.plot.mapFromScene(scene))
    assert window.context.tolist() == [7.0]
    inspector = window.current_view()
    point = view.points[72]
    qtbot.waitUntil(lambda: inspector.is_ready() and inspector.details is not None
                    and np.allclose(inspector.details["x"], point), timeout=TIMEOUT_MS)
    assert inspector.details["log_prob"] == pytest.approx(
        float(flow.log_prob(point[None], context=[[7.0]])[0]), abs=1e-3)
    view = window.show_view("samples")
    view.by_context.setChecked(False)
    qtbot.waitUntil(lambda: view.is_ready() and not view.drawn.get("sweep"),
                    timeout=TIMEOUT_MS)
    assert view.points.shape[0] == view.count.value()
    # Dimensions shown (64 coordinates) and Context share the side: each gets the room
    # its controls need (the held values scroll)
    density = window.views["density"]
    density.resolution.setCurrentIndex(0)
    show_ready(qtbot, window, "density")
    assert window.dock.isVisible() and window.context_dock.isVisible()
    assert window.panel.height() >= window.panel.sizeHint().height()
    assert window.context_panel.height() >= window.context_panel.sizeHint().height()
    context = window.context_panel
    assert context.scroll.height() >= context.values.sizeHint().height()
    window.show_view("inspector")           # the views set back below are hidden: no redraw
    view.count.setValue(count)
    density.resolution.setCurrentIndex(density_view.RESOLUTIONS.index(
        density_view.DEFAULT_RESOLUTION))


def test_context_panel_moves_a_class_label_in_its_steps(qtbot):
    from visualizer.context import ContextPanel
    panel = ContextPanel()
    qtbot.addWidget(panel)
    emitted = []
    panel.changed.connect(lambda c: emitted.append(c.tolist()))
    panel.set_model([3.0, 0.5], ["digit", "c2"], [(0, 9), (0.0, 1.0)], [1.0, None])
    digit, slider = panel.spins[0], panel.sliders[0]
    assert (slider.maximum(), slider.value(), digit.decimals()) == (9, 3, 0)
    assert "from 0 to 9 in steps of 1" in slider.toolTip()
    assert panel.sliders[1].maximum() == 1000                 # the other one: any value
    slider.setValue(7)
    assert emitted[-1] == [7.0, 0.5]
    panel.set_value(0, 4.4)                                   # typed: the nearest label
    assert emitted[-1] == [4.0, 0.5] and slider.value() == 4
    panel.set_value(0, 12.0)                                  # beyond the labels: the last
    assert emitted[-1] == [9.0, 0.5] and slider.value() == 9
    half = ContextPanel()
    qtbot.addWidget(half)
    half.set_model([1.0], None, [(0.0, 2.0)], [0.5])
    half.set_value(0, 1.3)
    assert half.context().tolist() == [1.5] and half.sliders[0].value() == 3
    # steps of 1 from 0.5: 0.5, 1.5, ..., 4.5 (they were rounded to whole numbers, so
    # the views drew radius 2 where 1.5 was asked, and 5, outside the range, at the end)
    offset = ContextPanel()
    qtbot.addWidget(offset)
    offset.set_model([1.5], ["radius"], [(0.5, 4.5)], [1.0])
    assert offset.context().tolist() == [1.5] and offset.spins[0].decimals() == 1
    offset.sliders[0].setValue(2)
    assert offset.context().tolist() == [2.5]
    offset.sliders[0].setValue(offset.sliders[0].maximum())
    assert offset.context().tolist() == [4.5] and offset.spins[0].text() == "4.5"


def test_context_panel_plays_a_coordinate_back_and_forth(qtbot):
    from visualizer.context import PLAY_TICKS, ContextPanel
    panel = ContextPanel()
    qtbot.addWidget(panel)
    emitted = []
    panel.changed.connect(lambda c: emitted.append(c.tolist()))
    panel.set_model([3.7, 8.0], ["radius", "digit"], [(1.0, 4.0), (0, 9)], [None, 1.0])
    panel.plays[0].click()
    assert panel.playing == 0 and panel.timer.isActive() and panel.plays[0].text() == "⏸"
    qtbot.waitUntil(lambda: len(emitted) >= 3, timeout=5000)   # the timer moves it
    panel.stop()
    assert not panel.timer.isActive() and not panel.plays[0].isChecked()
    radius = [c[0] for c in emitted]
    assert np.allclose(np.diff(radius[:3]), 3.0 / PLAY_TICKS, atol=1e-3)
    emitted.clear()
    for _ in range(12):
        panel.tick()                                         # not playing: nothing moves
    assert emitted == []
    panel.plays[1].click()                                   # the digit, one step a tick
    for _ in range(4):
        panel.tick()
    assert [c[1] for c in emitted] == [9.0, 8.0, 7.0, 6.0]   # turned back at 9
    assert all(c[0] == emitted[0][0] for c in emitted)       # the radius stays
    panel.plays[0].click()                                   # playing another stops it
    assert panel.playing == 0 and not panel.plays[1].isChecked()
    panel.set_model([1.0], None, [(0.0, 2.0)])               # a new model stops playing
    assert panel.playing is None and not panel.timer.isActive()


def test_context_steps_come_from_the_manifest():
    from visualizer.opening import _context_steps
    assert _context_steps({"context_step": [1, None]}, 2) == [1.0, None]
    for steps, context_dim in [([1], 2), ([0], 1), (["a"], 1), (1, 1), (None, 1)]:
        assert _context_steps({"context_step": steps}, context_dim) is None, steps


def test_forward_only_flow_opens_and_every_view_draws(qtbot, window, models):
    import kerasflows.targets
    from visualizer.compute import SAMPLED_DENSITY_POINTS
    folder, flow = models["planar"]
    info = open_model(qtbot, window, folder)
    assert not info["invertible"] and info["target"] == "u1"
    samples = window.show_view("samples")
    qtbot.waitUntil(samples.is_ready, timeout=TIMEOUT_MS)
    want = flow.sample(samples.count.value(), seed=samples.seed,
                       temperature=samples.temperature.value()).numpy()
    np.testing.assert_allclose(samples.points, want, atol=1e-4)
    density = window.show_view("density")
    assert density.source.currentData() == "both" and density.right.plot.isVisible()
    density.resolution.setCurrentIndex(0)                    # 64 x 64
    qtbot.waitUntil(lambda: density.is_ready() and density.image.shape == (64, 64)
                    and density.right.image.shape == (64, 64), timeout=TIMEOUT_MS)
    x, log_p = flow.sample_and_log_prob(SAMPLED_DENSITY_POINTS, seed=0)
    want, _ = geometry.pixel_log_mean(x.numpy(), log_p.numpy(), density.region, 64)
    np.testing.assert_allclose(density.image, want, rtol=1e-4, atol=1e-4)
    assert np.isfinite(density.image).sum() > 500
    assert density.note.isVisible() and "no inverse" in density.note.text()
    u1 = kerasflows.targets.get("u1")
    grid = geometry.grid_points(density.right.region, 64)
    np.testing.assert_allclose(density.right.image.ravel(), u1(grid).numpy() - u1.log_z,
                               rtol=1e-5, atol=1e-4)
    layers = window.show_view("layers")
    qtbot.waitUntil(layers.is_ready, timeout=TIMEOUT_MS)
    assert layers.direction.currentData() == "forward"
    assert not layers.direction.model().item(1).isEnabled()
    assert layers.note.isVisible() and "Planar" in layers.note.text()
    grid, _, cloud = layers._inputs()
    np.testing.assert_allclose(layers.cloud_states,
                               np.stack(flow.trace(np.concatenate([grid, cloud])))[:, len(grid):],
                               atol=1e-4)
    inspector = show_ready(qtbot, window, "inspector")
    assert inspector.message.isVisible() and "no inverse" in inspector.message.text()
    tiny = open_model(qtbot, window, models["tiny"][0])          # an invertible flow again
    assert tiny["invertible"] and layers.direction.model().item(1).isEnabled()
    assert not layers.note.isVisible() and not inspector.message.isVisible()


def test_warm_up_plan_covers_the_shapes_the_views_ask_for():
    from visualizer.views import warm_up_plan
    plan = warm_up_plan({"invertible": True, "has_trace": True})
    assert ("log_prob", 64 * 64) in plan and ("log_prob", 256 * 256) in plan
    from visualizer import compute
    assert ("log_prob", compute.PAN_BLOCK) in plan          # a panned heatmap's new pixels
    assert ("forward", 10_000) in plan and ("trace", 2 * 17 * 80 + 2000) in plan
    from visualizer.worker import KEEP_WARM_ROWS
    assert ("log_prob", KEEP_WARM_ROWS) in plan          # the compute thread's keep-warm shape
    assert warm_up_plan({"invertible": False, "has_trace": True}) == \
        [("forward", 10_000), ("trace", 2 * 17 * 80 + 2000), ("forward", KEEP_WARM_ROWS)]
    assert all(not m.startswith("trace")
               for m, _ in warm_up_plan({"invertible": True, "has_trace": False}))


def check_target_beside_flow(qtbot, view, folder, info):
    """The target (normalised) beside the flow, then the target alone, on one colour scale."""
    import keras
    import kerasflows.targets
    target = kerasflows.targets.get(info["target"])
    assert view.source.currentData() == "both" and view.right.plot.isVisible()
    grid = geometry.grid_points(view.right.region, view.right.image.shape[0])
    want = target(grid).numpy() - target.log_z
    np.testing.assert_allclose(view.right.image.ravel(), want, rtol=1e-5, atol=1e-4)
    assert view.right.region == view.region
    assert view.right.title == f"target {info['target']}: log p~(x) − log Z (normalised)"
    assert view.bar.axis.labelText == (f"{view.left.title.split(': ')[1].split(' at ')[0]} "
                                       "(left) · log p~(x) − log Z (right)")
    levels = view.bar.levels()
    assert levels[1] == pytest.approx(max(np.nanmax(view.image), want.max()), abs=1e-4)
    if info["invertible"]:
        flow = keras.models.load_model(folder / "flow.keras")
        flow.eval_mode = "eager"        # one call: tracing it took longer (1 s)
        np.testing.assert_allclose(view.image.ravel(), flow.log_prob(grid).numpy(),
                                   rtol=1e-4, atol=1e-3)
    view.source.setCurrentIndex(view.source.findData("target"))
    qtbot.waitUntil(lambda: view.is_ready() and view.image is not None, timeout=TIMEOUT_MS)
    assert not view.right.plot.isVisible()
    assert view.bar.axis.labelText == "log p~(x) − log Z"
    grid = geometry.grid_points(view.region, view.image.shape[0])   # the plot grew: new region
    np.testing.assert_allclose(view.image.ravel(), target(grid).numpy() - target.log_z,
                               rtol=1e-5, atol=1e-4)


def test_every_shipped_model_opens_and_draws_every_view(qtbot, window, monkeypatch):
    from visualizer.views import inspector as inspector_view
    monkeypatch.setattr(inspector_view, "BACKDROP_RESOLUTION", 64)   # the heatmap's shape
    names = {p.name for p in SHIPPED}
    assert {"moons", "u1_planar", "u3_nsf", "ring_radius", *SAME_RECIPE_AS_MOONS} <= names, \
        f"shipped models: {sorted(names)}"
    window.resize(900, 600)
    density, samples = window.views["density"], window.views["samples"]
    density.resolution.setCurrentIndex(0)                    # 64 x 64 keeps this quick
    # As many samples as the layers view traces points: both pad to 5120 rows, so what
    # XLA compiles of a model (its tables, spline kernels) compiles that shape once for
    # both (200 samples were a shape of their own: 3 s more on the first spline flow).
    from visualizer.views.layers import CLOUD_POINTS
    count = len(geometry.grid_lines((0.0, 1.0, 0.0, 1.0))[0]) + CLOUD_POINTS
    samples.count.setValue(count)
    try:
        for folder in SHIPPED:
            window.show_view("density")
            info = open_model(qtbot, window, folder)
            assert info["name"] and info["event_dim"] >= 2, folder
            if info["context_dim"] is not None:      # opens at its manifest's context
                assert window.context.tolist() == info["manifest"]["context"], folder
                labels = [window.context_panel.form.labelForField(spin.parentWidget()).text()
                          for spin in window.context_panel.spins]
                assert labels == info["manifest"]["context_names"], folder
            qtbot.waitUntil(density.is_ready, timeout=TIMEOUT_MS)
            finite = np.isfinite(density.image)
            assert finite.mean() > (0.99 if info["invertible"] else 0.01), folder
            if info["target"]:
                check_target_beside_flow(qtbot, density, folder, info)
            assert show_ready(qtbot, window, "samples").points.shape == (count, info["event_dim"])
            if folder.name in SAME_RECIPE_AS_MOONS:
                # trained with moons' recipe: its layers and inspector views
                # run what moons' do, on other weights
                assert recipe(folder.name) == recipe("moons"), folder
                continue
            layers = show_ready(qtbot, window, "layers")
            assert layers.cloud_states.shape[0] == info["num_layers"] + 1, folder
            inspector = show_ready(qtbot, window, "inspector")
            assert (inspector.details is not None) == info["invertible"], folder
    finally:
        window.resize(1280, 840)
        samples.count.setValue(10_000)


def test_layers_of_a_flow_that_permutes_follow_the_coordinates_shown(qtbot, window, models):
    """D > 2 with a Permute (reversing 4 coordinates) between two couplings: the view
    follows x1, x2 back to z4, z3 of the base, and the grid stays a grid."""
    folder, flow = models["permuted"]
    open_model(qtbot, window, folder)
    view = show_ready(qtbot, window, "layers")
    assert view.state_names()[2] == "2 · after Permute (r0)"     # the name it was given
    assert view.positions.tolist() == [[3, 2], [3, 2], [0, 1], [0, 1]]
    grid, connect, cloud = view._inputs()
    assert np.ptp(grid[:, 3]) > 1 and np.ptp(grid[:, 2]) > 1 and np.ptp(grid[:, 0]) == 0
    states = np.stack(flow.trace(np.concatenate([grid, cloud])))
    for k, shown in enumerate(view.positions):
        np.testing.assert_allclose(view.grid_states[k], states[k, :len(grid)][:, shown],
                                   atol=1e-4)
        np.testing.assert_allclose(view.cloud_states[k], states[k, len(grid):][:, shown],
                                   atol=1e-4)
        distinct = len(np.unique(np.round(view.grid_states[k], 4), axis=0))
        assert distinct > 0.8 * len(grid), f"the grid collapsed after layer {k}"
    assert view.note.isVisible() and "z4, z3 become x1, x2" in view.note.text()
    # the pictures' states hold every coordinate in its data place: before the Permute
    # reversed (they were drawn as traced, a digit upside down until the Permute)
    images = states[:, len(grid):len(grid) + view.image_states.shape[1]]
    np.testing.assert_allclose(view.image_states[:2], images[:2][:, :, ::-1], atol=1e-4)
    np.testing.assert_allclose(view.image_states[2:], images[2:], atol=1e-4)
    view.set_layer(0)
    bottom = view.plot.getPlotItem().getAxis("bottom").labelText
    assert bottom == "z4 → x1   (here: position 4)"
    view.direction.setCurrentIndex(1)                        # data -> base
    qtbot.waitUntil(view.is_ready, timeout=TIMEOUT_MS)
    assert view.positions.tolist() == [[0, 1], [0, 1], [3, 2], [3, 2]]
    grid, connect, cloud = view._inputs()
    states = np.stack(flow.trace_inverse(np.concatenate([grid, cloud])))
    np.testing.assert_allclose(view.cloud_states[-1], states[-1, len(grid):][:, [3, 2]],
                               atol=1e-4)
    assert "x1, x2 become z4, z3" in view.note.text()
    data = view.export_data()
    np.testing.assert_array_equal(data["shown_positions"], view.positions)
    view.direction.setCurrentIndex(0)
    # the inspector's path follows the same coordinates from x to z
    inspector = show_ready(qtbot, window, "inspector")
    qtbot.waitUntil(lambda: inspector.details is not None, timeout=TIMEOUT_MS)
    assert inspector.path_positions().tolist() == [[0, 1], [0, 1], [3, 2], [3, 2]]
    path = np.stack(flow.trace_inverse(inspector.point[None]))[:, 0]
    xs, ys = inspector.path_item.getData()
    np.testing.assert_allclose(np.stack([xs, ys], 1), path[[0, 1, 2, 3], :][
        np.arange(4)[:, None], [[0, 1], [0, 1], [3, 2], [3, 2]]], atol=1e-4)
    np.testing.assert_array_equal(inspector.export_data()["path_positions"],
                                  inspector.path_positions())


def test_context_slider_of_a_step_not_dividing_its_range_stays_on_the_steps(qtbot):
    from visualizer.context import ContextPanel
    panel = ContextPanel()
    qtbot.addWidget(panel)
    emitted = []
    panel.changed.connect(lambda c: emitted.append(c.tolist()))
    panel.set_model([0.0], None, [(0.0, 1.0)], [0.3])
    slider = panel.sliders[0]
    assert slider.maximum() == 3
    for position in (1, 2, 3):
        slider.setValue(position)
    assert np.allclose([c[0] for c in emitted], [0.3, 0.6, 0.9]) and len(emitted) == 3
    assert slider.value() == 3


def test_context_steps_past_the_range_or_finer_than_the_box_shows_all_reach_the_views(qtbot):
    """0 to 23 in steps of 2: the slider's end and a typed 23 gave 24, past the range,
    which the box clamped to 23 and never emitted (the views stayed at 22, the panel
    said 23), and the sweeps (the context animation, One row per value) went to 24. A
    step of 1/3 (0.333333 in the box) or of 1e-7 (below the box's 6 decimals) left
    most slider positions emitting nothing."""
    from visualizer import animation, geometry
    from visualizer.context import ContextPanel
    from visualizer.opening import check_context
    # a range whose start the box rounds (0.1234564 shows as 0.123456): the step sent is
    # inside it, and no warning says otherwise
    start = ContextPanel()
    qtbot.addWidget(start)
    start.set_model([0.1234564], ["c"], [(0.1234564, 5.1234564)], [1.0])
    assert start.context()[0] == np.float32(0.1234564) and start.outside_text() == ""
    assert geometry.stepped_values(0.0, 23.0, 2.0).tolist() == list(range(0, 23, 2))
    assert animation.context_values(0.0, 23.0, 2.0).tolist() == list(range(0, 23, 2))
    check_context([22.0], ["hour"], [(0.0, 23.0)], [2.0])
    with pytest.raises(ValueError, match="0 to 22 in steps of 2"):
        check_context([24.0], ["hour"], [(0.0, 23.0)], [2.0])
    for ranges, step, wanted_last in [((0.0, 23.0), 2.0, 22.0), ((0.0, 4.6), 1.0, 4.0),
                                      ((0.0, 10.0), 1 / 3, 10.0), ((0.0, 1e-5), 1e-7, 1e-5)]:
        panel = ContextPanel()
        qtbot.addWidget(panel)
        emitted = []
        panel.changed.connect(lambda c: emitted.append(float(c[0])))
        panel.set_model([0.0], ["c"], [ranges], [step])
        values = geometry.stepped_values(*ranges, step)
        slider = panel.sliders[0]
        assert slider.maximum() == len(values) - 1 and panel.spins[0].maximum() <= ranges[1]
        for position in range(1, slider.maximum() + 1):
            slider.setValue(position)
            assert len(emitted) == position, (step, position, panel.spins[0].text())
        np.testing.assert_allclose(emitted, values[1:].astype(np.float32), rtol=1e-6)
        assert emitted[-1] == pytest.approx(wanted_last, rel=1e-6)
        assert panel.outside_text() == "", (step, panel.outside_text())   # steps are inside
        panel.set_value(0, 0.0)
        panel.set_value(0, ranges[1])       # typed at the range's end: its last step
        assert float(panel.context()[0]) == pytest.approx(wanted_last, rel=1e-6), step
        assert emitted[-1] == pytest.approx(wanted_last, rel=1e-6), step


def scaled_model(path, shift, scale):
    """Writes to `path` a 2-D flow whose data are its base's scaled by `scale` and
    shifted by `shift` (per column). Returns `path`."""
    import kerasflows
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,), standardize=True)
    flow.log_prob(np.zeros((1, 2), np.float32))
    scaler = flow.flow_layers[-1]
    scaler.center.assign(shift)                 # shift stays 0: in standard deviations
    scaler.log_scale.assign(np.log(scale).astype(np.float32))
    scaler.initialized.assign(True)
    flow.save(str(path))
    return path


def people_model(path):
    """A 2-D flow of ages (about 45 years) and incomes (about 40,000 dollars):
    columns on very different scales."""
    return scaled_model(path, [45.0, 40_000.0], [12.0, 15_000.0])


def test_columns_on_different_scales_get_an_axis_scale_each(qtbot, window, models, tmp_path):
    # age in years against income in dollars: a locked aspect drew the flow as a line
    open_model(qtbot, window, people_model(tmp_path / "people.keras"))
    locked = lambda view: view.plot.getPlotItem().getViewBox().state["aspectLocked"]
    for name in ("samples", "density"):
        view = show_ready(qtbot, window, name)
        (x0, x1), (y0, y1) = view.plot.getPlotItem().getViewBox().viewRange()
        assert not locked(view), name
        assert 40 < x1 - x0 < 200 and 4e4 < y1 - y0 < 2e5, (name, x0, x1, y0, y1)
    density = window.show_view("density")
    width = density.plot.getPlotItem().getAxis("left").width()
    assert width > 48 and density.right.plot.getPlotItem().getAxis("left").width() == width
    layers = show_ready(qtbot, window, "layers")
    layers.set_layer(0)
    qtbot.waitUntil(lambda: locked(layers), timeout=TIMEOUT_MS)    # the base: one scale
    layers.set_layer(len(layers.state_names()) - 1)
    qtbot.waitUntil(lambda: not locked(layers), timeout=TIMEOUT_MS)  # the data: one each
    open_model(qtbot, window, models["tiny"][0])                     # unit-scale data again
    view = show_ready(qtbot, window, "density")
    assert locked(view)
    assert view.plot.getPlotItem().getAxis("left").width() == 48


def check_axes_show_the_view_range(view):
    """The density view's axes tick the range its view boxes show (both panels)."""
    for panel in (view.left, view.right):
        item = panel.plot.getPlotItem()
        x_range, y_range = item.getViewBox().viewRange()
        np.testing.assert_allclose(item.getAxis("bottom").range, x_range)
        np.testing.assert_allclose(item.getAxis("left").range, y_range)


def test_density_axes_follow_a_new_models_region_and_new_coordinates(qtbot, window, models,
                                                                    tmp_path):
    # the placing of a new region blocked the view box's signals, and the axes update
    # from them: they kept the last model's ticks until a resize
    open_model(qtbot, window, models["tiny"][0])
    view = show_ready(qtbot, window, "density")
    check_axes_show_the_view_range(view)
    # (tick labels as wide as before: a wider axis would resize the plot, and update it)
    open_model(qtbot, window, scaled_model(tmp_path / "s.keras", [20.0, 0.0], [1.0, 5.0]))
    qtbot.waitUntil(view.is_ready, timeout=TIMEOUT_MS)
    assert view.visible_region()[0] > 10, "the new model's region"
    check_axes_show_the_view_range(view)
    window.panel.set_dims(1, 0)                  # the coordinates swap
    qtbot.waitUntil(view.is_ready, timeout=TIMEOUT_MS)
    assert view.visible_region()[2] > 10, "the swapped region"
    check_axes_show_the_view_range(view)
    assert view.region[2] > 10, "the heatmap is of the new region"


def flow_with_data(path, layers, data, base_loc=0.0):
    """Saves `Flow(layers)` (a learned normal base at `base_loc`) to `path`, with a
    training record naming `data` (saved beside it); returns `path`."""
    import kerasflows
    flow = kerasflows.Flow(layers, event_dim=data.shape[1], base="learned_normal")
    flow.log_prob(data[:1])
    flow.base_loc.assign(np.full(data.shape[1], base_loc, np.float32))
    flow.save(str(path))
    np.save(path.with_suffix(".npy"), data)
    write_training_record(path, {"dataset": None, "data": path.with_suffix(".npy").name,
                                 "data_path": str(path.with_suffix(".npy"))})
    return path


def test_density_says_when_log_p_is_not_finite_anywhere_in_view(qtbot, window, tmp_path):
    # outside a Sigmoid flow's (0, 1)^2 every pixel was NaN: a uniform colour, a colour
    # bar 0..1 and no word why
    from kerasflows.layers import Sigmoid
    data = np.random.default_rng(0).uniform(0.05, 0.95, (300, 2)).astype(np.float32)
    open_model(qtbot, window, flow_with_data(tmp_path / "unit.keras", [Sigmoid()], data))
    view = show_ready(qtbot, window, "density")
    assert not view.message.isVisibleTo(view) and view.bar_box.isVisibleTo(view)
    view.view_box.setRange(xRange=(3, 4), yRange=(3, 4), padding=0)
    qtbot.waitUntil(lambda: view.is_ready() and view.region[0] > 2, timeout=TIMEOUT_MS)
    assert not np.isfinite(view.image).any()
    assert view.message.isVisibleTo(view)
    assert "log p(x) is not finite" in view.message.text() and "domain" in view.message.text()
    assert view.image_item.image is None and not view.bar_box.isVisibleTo(view)
    view.view_box.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
    qtbot.waitUntil(lambda: view.is_ready() and view.region[0] < 1, timeout=TIMEOUT_MS)
    assert not view.message.isVisibleTo(view) and view.bar_box.isVisibleTo(view)
    assert view.image_item.image is not None


def drawn_tick_labels(axis):
    """The tick labels pyqtgraph lays out on `axis` (it leaves out those that do not fit)."""
    from PySide6 import QtGui
    picture = QtGui.QImage(8, 8, QtGui.QImage.Format.Format_ARGB32)
    painter = QtGui.QPainter(picture)
    try:
        return [text for _, _, text in axis.generateDrawSpecs(painter)[2]]
    finally:
        painter.end()


def test_density_p_scale_draws_far_from_the_data_and_says_when_p_is_0(qtbot, window, tmp_path):
    """On the p(x) scale, 20 units out (log p near -400) the heatmap was 0 at every
    pixel (exp in float32), one colour under a bar reading 0..1; 50 units out, where
    p(x) is 0 even in float64, nothing said why. Near the data, the bar's ticks
    were scaled by an SI prefix ("(x0.001)" beside ticks of 0 to 200)."""
    from kerasflows.layers import ElementwiseAffine
    data = np.random.default_rng(0).standard_normal((300, 2)).astype(np.float32)
    open_model(qtbot, window, flow_with_data(tmp_path / "n.keras", [ElementwiseAffine()], data))
    view = show_ready(qtbot, window, "density")
    view.scale.setCurrentIndex(1)                            # p(x)
    lo, hi = view.bar.levels()
    assert lo == 0 and 0.1 < hi < 0.2 and view.bar.axis.autoSIPrefixScale == 1
    view.view_box.setRange(xRange=(20, 21), yRange=(20, 21), padding=0)
    qtbot.waitUntil(lambda: view.is_ready() and view.region[0] > 19, timeout=TIMEOUT_MS)
    lo, hi = view.bar.levels()
    assert np.isfinite(view.image).all() and view.image.max() < -300
    assert 0 < hi < 1e-100 and not view.message.isVisibleTo(view)
    assert np.ptp(view.image_item.image) > 0                # not one colour
    assert all("e-" in t for t in view.bar.axis.tickStrings([hi / 2, hi], 1, hi / 2))
    # and pyqtgraph lays them out: it left out labels wider than the bar's 45 px axis
    # (once the layout has given the axis the width asked for: in a full run it had not
    # yet at times when the heatmap was ready, and only "0" fitted the old 50 px)
    qtbot.waitUntil(lambda: view.bar.axis.width() == view.bar.axis.fixedWidth,
                    timeout=TIMEOUT_MS)
    drawn = drawn_tick_labels(view.bar.axis)
    assert len(drawn) >= 3 and sum("e-" in t for t in drawn) >= 2, (
        drawn, view.bar.axis.width(), view.bar.axis.geometry().getRect(), view.bar.levels(),
        view.bar.axis.range, window.size().toTuple())
    # one format on one bar: 5.0e-05, 1.0e-04, not 5e-05, 1.0e-04
    assert view.bar.axis.tickStrings([0, 5e-5, 1e-4, 1.5e-4], 1, 5e-5) == [
        "0", "5.0e-05", "1.0e-04", "1.5e-04"]
    view.view_box.setRange(xRange=(50, 51), yRange=(50, 51), padding=0)
    qtbot.waitUntil(lambda: view.is_ready() and view.region[0] > 49, timeout=TIMEOUT_MS)
    assert view.message.isVisibleTo(view) and "p(x) is below" in view.message.text()
    assert view.image_item.image is None and not view.bar_box.isVisibleTo(view)
    view.scale.setCurrentIndex(0)                            # log p(x): drawn, no message
    assert not view.message.isVisibleTo(view) and view.bar_box.isVisibleTo(view)


def test_two_bar_fits_in_one_event_loop_turn_keep_the_last(qtbot, window, tmp_path):
    """The bar's fit compared its width with the laid-out one, which follows an event-
    loop turn later: a fit for wide labels, then one back to the laid-out width in the
    same turn, was skipped, and the bar kept the wide one."""
    from kerasflows.layers import ElementwiseAffine
    from visualizer.views.density import BAR_AXIS_WIDTH
    data = np.random.default_rng(0).standard_normal((300, 2)).astype(np.float32)
    open_model(qtbot, window, flow_with_data(tmp_path / "n.keras", [ElementwiseAffine()], data))
    view = show_ready(qtbot, window, "density")
    axis = view.bar.axis
    qtbot.waitUntil(lambda: axis.width() == axis.fixedWidth, timeout=TIMEOUT_MS)
    laid_out = axis.width()
    view._fit_bar_labels((0.0, 1.2e-172))            # wide labels: a wider axis asked for
    assert axis.fixedWidth > max(laid_out, BAR_AXIS_WIDTH)
    view._fit_bar_labels(view.bar.levels())          # and back, in the same turn
    assert axis.fixedWidth == laid_out
    for _ in range(3):
        QtWidgets.QApplication.processEvents()
    assert axis.width() == laid_out


def test_samples_not_finite_are_counted_apart_and_none_finite_says_so(qtbot, window,
                                                                      tmp_path):
    # a Logit data end gives NaN for base values outside (0, 1): the scatter dropped
    # those samples, while the label counted them all
    from kerasflows.layers import Logit
    data = np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32)
    open_model(qtbot, window, flow_with_data(tmp_path / "some.keras", [Logit()], data, 0.5))
    samples = show_ready(qtbot, window, "samples")
    finite = int(np.isfinite(samples.points).all(1).sum())
    assert 0 < finite < len(samples.points) == 10_000
    assert len(samples.cloud.points) == finite
    assert f"{finite:,} of 10,000 samples finite" in samples.seed_label.text()
    assert not samples.message.isVisibleTo(samples)
    pairs = show_ready(qtbot, window, "pairs")
    assert f"; {int(np.isfinite(pairs.points).all(1).sum()):,} finite" in \
        pairs.seed_label.text()
    assert not pairs.message.isVisibleTo(pairs)
    open_model(qtbot, window, flow_with_data(tmp_path / "none.keras", [Logit()], data, 20.0))
    for view in (show_ready(qtbot, window, "pairs"), show_ready(qtbot, window, "samples")):
        assert not np.isfinite(view.points).all(1).any()
        assert view.message.isVisibleTo(view)
        assert "None of the flow's 10,000 samples is finite" in view.message.text()
    assert len(samples.cloud.points) == 0
    assert "0 of 10,000 samples finite" in samples.seed_label.text()
    open_model(qtbot, window, tmp_path / "some.keras")
    assert not show_ready(qtbot, window, "samples").message.isVisibleTo(samples)


def test_pairs_view_draws_every_pair_and_each_marginal(qtbot, window, models, tmp_path):
    from visualizer import marginals
    folder, _ = models["wide"]
    if window.info is None or window.info["path"] != str(folder):
        open_model(qtbot, window, folder)
    view = show_ready(qtbot, window, "pairs")
    assert not window.dock.isVisible(), "the held values mean nothing to marginals"
    assert view.coords == [0, 1, 2, 3] and len(view.cells) == 16
    data = window.info["reference"]
    n = len(data)
    assert view.points.shape == (10_000, 4) and view.drawn["temperature"] == 1.0
    for (i, j), (data_item, flow_item) in view.items.items():
        if i > j:       # samples below the diagonal, as many as the data points
            np.testing.assert_allclose(flow_item.points, view.points[:n, [j, i]], atol=1e-6)
        elif i < j:     # the data above, in the same rows' and columns' axes
            np.testing.assert_allclose(data_item.points, data[:, [j, i]], atol=1e-6)
        else:
            edges, (flow, seen) = marginals.marginal_densities(
                [view.points[:, i], data[:, i]], *view.ranges[i])
            np.testing.assert_allclose(flow_item.getData()[1], flow)
            np.testing.assert_allclose(data_item.getData()[1], seen)
            assert np.sum(flow * np.diff(edges)) > 0.9            # a density, mostly in range
    assert "10,000 flow samples" in view.seed_label.text()
    assert f"{n:,} training points" in view.seed_label.text()
    # a cell's zoom moves its column and its row
    view.cells[3, 1].setXRange(-0.5, 0.25, padding=0)
    assert view.cells[1, 1].viewRange()[0] == pytest.approx([-0.5, 0.25])
    view.cells[3, 1].setYRange(0.0, 0.5, padding=0)
    assert view.cells[3, 2].viewRange()[1] == pytest.approx([0.0, 0.5])
    assert view.cells[3, 0].viewRange()[1] == pytest.approx([0.0, 0.5])
    assert view.left_axes[3].labelText == "x4"
    assert view.bottom_axes[2].labelText == "x3"
    # fewer coordinates: a smaller grid from the same samples, no new computation
    before = view.points
    view.picker.item(1).setCheckState(QtCore.Qt.CheckState.Unchecked)
    assert view.coords == [0, 2, 3] and len(view.cells) == 9 and view.points is before
    np.testing.assert_allclose(view.items[2, 1][1].points, before[:n, [2, 3]], atol=1e-6)
    assert view.picker_button.text() == "x1, x3, x4"
    with pytest.raises(ValueError, match="1 to 6 different coordinates"):
        view.set_coordinates([])
    with pytest.raises(ValueError, match=r"in \[0, 3\]"):
        view.set_coordinates([0, 4])
    # without the data: no data cells, all the samples in the scatters
    view.show_data.setChecked(False)
    assert len(view.items[0, 1][0].points) == 0 and len(view.items[1, 0][1].points) == 10_000
    assert "training points" not in view.seed_label.text()
    assert "training data hidden (above the diagonal)" in view.seed_label.text()
    view.show_data.setChecked(True)
    seed, samples_seed = view.seed, window.views["samples"].seed
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    view.canvas.setFocus()
    qtbot.keyClick(view.canvas, QtCore.Qt.Key.Key_R)             # Samples > Resample Pairs
    assert window.views["samples"].seed == samples_seed, "R resamples the view shown only"
    qtbot.waitUntil(lambda: view.is_ready() and view.drawn["seed"] == seed + 1,
                    timeout=TIMEOUT_MS)
    assert view.drawn["seed"] == seed + 1 and not np.allclose(view.points, before)
    assert window.save_view_data(tmp_path / "pairs.npz")
    with np.load(tmp_path / "pairs.npz", allow_pickle=False) as saved:
        assert str(saved["view"]) == "pairs" and "held" not in saved
        assert list(saved["dims"]) == [0, 2, 3] and saved["edges"].shape == (3, 41)
        np.testing.assert_array_equal(saved["samples"], view.points)
        assert saved["flow_density"].shape == saved["data_density"].shape == (3, 40)
    window.show_view("samples")
    assert window.dock.isVisible()
    view.set_coordinates(range(4))


def test_pairs_grid_is_built_when_the_view_is_shown_for_the_model_open(qtbot, window, models):
    """Opening a model while another view is shown leaves the Pairs grid to be built
    when it is shown (it took 0.7 s a model); then it is the new model's."""
    view = show_ready(qtbot, window, "pairs")
    show_ready(qtbot, window, "samples")
    opened = "wide" if window.info["name"] != "wide" else "tiny"
    open_model(qtbot, window, models[opened][0])
    assert view.grid_stale
    view.draw()                                    # a stale grid is left alone
    show_ready(qtbot, window, "pairs")
    k = window.info["event_dim"]
    assert not view.grid_stale and view.coords == list(range(k)) and len(view.cells) == k * k
    assert view.bottom_axes[0].labelText == "x1"


def test_pairs_cells_are_drawn_one_size_and_square(qtbot, window, models):
    """Every cell's plot area is as large as every other's (the axes sit beside the
    grid): the cells of the axes' column and row were smaller, and with two
    coordinates the data cell had 3.3 times the area of the samples cell it mirrors.
    And square, in a wide window and a tall one: the cells took the canvas' shape, so
    a ring (ring_radius) was drawn as an ellipse."""
    folder, _ = models["wide"]
    if window.info is None or window.info["path"] != str(folder):
        open_model(qtbot, window, folder)
    view = show_ready(qtbot, window, "pairs")
    size = window.size()
    try:
        for shape, k in (((1280, 840), 2), ((1280, 840), 3), ((900, 1100), 4)):
            window.resize(*shape)
            view.set_coordinates(range(k))
            view.canvas.ci.layout.activate()
            QtWidgets.QApplication.processEvents()
            sizes = np.array([plot.getViewBox().sceneBoundingRect().size().toTuple()
                              for plot in view.cells.values()])
            assert len(sizes) == k * k and sizes.min() > 50, (k, sizes)
            np.testing.assert_allclose(sizes, np.tile(sizes.mean(0), (k * k, 1)), atol=2,
                                       err_msg=f"{k} coordinates")
            assert abs(sizes[0, 0] - sizes[0, 1]) <= 2, (shape, sizes[0])
    finally:
        window.resize(size)


def test_pairs_of_a_picture_flow_start_at_its_most_varied_pixels(qtbot, window, models):
    from visualizer import marginals
    info = open_model(qtbot, window, models["pictures"][0])
    view = show_ready(qtbot, window, "pairs")
    spread = info["reference"].std(0)
    assert len(view.coords) == marginals.MAX_SHOWN
    assert set(view.coords) == set(np.argsort(-spread, kind="stable")[:6])
    unticked = next(d for d in range(16) if d not in view.coords)
    item = view.picker.item(unticked)
    assert not item.flags() & QtCore.Qt.ItemFlag.ItemIsEnabled, "six is the most"
    view.set_coordinates([unticked])
    assert len(view.cells) == 1
    assert not view.picker.item(unticked).flags() & QtCore.Qt.ItemFlag.ItemIsEnabled, \
        "the last one cannot be unticked"
    assert all(view.picker.item(d).flags() & QtCore.Qt.ItemFlag.ItemIsEnabled
               for d in range(16) if d != unticked), "and any other can be ticked"


def test_a_picture_flow_opens_on_its_two_most_varied_pixels(qtbot, window, models):
    """The other views opened a picture flow on x1 and x2, pixels of a blank border
    that hardly vary (digits' density a smooth blur); they open, as Pairs does, on
    the two that vary most in its data. A table's flow opens on x1 and x2."""
    info = open_model(qtbot, window, models["pictures"][0])
    want = sorted(np.argsort(-info["reference"].std(0), kind="stable")[:2])
    assert list(window.projection.dims) == want != [0, 1]
    assert [window.panel.x_dim.currentIndex(), window.panel.y_dim.currentIndex()] == want
    folder, _ = models["wide"]
    open_model(qtbot, window, folder)
    assert list(window.projection.dims) == [0, 1]


def test_pairs_of_a_conditional_flow_say_the_data_mix_every_context(qtbot, window, tmp_path):
    from test_visualizer_support import make_flow
    flow = make_flow(3, 2, context_dim=1)
    data = np.random.default_rng(2).normal(size=(400, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    flow.save(tmp_path / "c.keras")
    write_training_record(tmp_path / "c.keras", {"dataset": None, "data": "x.npy",
                                                "data_path": str(tmp_path / "x.npy")})
    info = open_model(qtbot, window, tmp_path / "c.keras")
    assert info["reference_is_data"] and info["reference_source"].startswith("x.npy")
    view = show_ready(qtbot, window, "pairs")
    assert view.note.isVisibleTo(view) and "every context" in view.note.text()
    np.testing.assert_allclose(view.items[0, 2][0].points, data[:, [2, 0]], atol=1e-6)
    assert view.show_data.toolTip() == f"The training data: {info['reference_source']}"
    view.show_data.setChecked(False)
    assert not view.note.isVisibleTo(view)
    view.show_data.setChecked(True)


def test_pairs_of_a_flow_without_training_data_say_why_the_cells_above_are_empty(
        qtbot, window, tmp_path):
    from test_visualizer_support import make_flow
    make_flow(3, 2).save(tmp_path / "bare.keras")           # no training record: no data
    info = open_model(qtbot, window, tmp_path / "bare.keras")
    assert not info["reference_is_data"]
    view = show_ready(qtbot, window, "pairs")
    assert "no training data known (above the diagonal)" in view.seed_label.text()
    assert all(len(view.items[i, j][0].points) == 0 for i, j in view.items if i < j)


def test_a_double_click_on_a_pair_shows_it_in_the_samples_view(qtbot, window, models):
    from PySide6 import QtCore as QC
    folder, _ = models["wide"]
    if window.info is None or window.info["path"] != str(folder):
        open_model(qtbot, window, folder)
    view = show_ready(qtbot, window, "pairs")
    view.set_coordinates(range(4))
    cell = view.cells[3, 1].getViewBox()
    centre = cell.sceneBoundingRect().center()
    assert view.cell_at(centre) == (3, 1)
    assert view.cell_at(QC.QPointF(-50, -50)) is None
    pixel = view.canvas.mapFromScene(centre)
    port, left = view.canvas.viewport(), QC.Qt.MouseButton.LeftButton
    qtbot.mouseClick(port, left, pos=pixel)
    qtbot.mouseDClick(port, left, pos=pixel)          # (pyqtgraph reports it on release)
    qtbot.mouseRelease(port, left, pos=pixel)
    qtbot.waitUntil(lambda: window.current_view().name == "samples", timeout=5000)
    assert window.projection.dims == (1, 3)             # x2 across, x4 up
    samples = window.views["samples"]
    qtbot.waitUntil(samples.is_ready, timeout=TIMEOUT_MS)
    np.testing.assert_allclose(samples.cloud.points, samples.points[:, [1, 3]], atol=1e-6)
    with pytest.raises(ValueError, match=r"cell \(2, 2\) is a marginal"):
        view.show_pair(2, 2)
    window.panel.set_dims(0, 1)


def gif_frames(path):
    """The frames of a GIF file as `[h, w, 3]` arrays, and their durations (ms)."""
    from PIL import Image
    frames, durations = [], []
    with Image.open(path) as image:
        assert image.info.get("loop") == 0, "the animation loops"
        for i in range(image.n_frames):
            image.seek(i)
            frames.append(np.asarray(image.convert("RGB")))
            durations.append(image.info["duration"])
    return frames, durations


def test_layers_animation_plays_every_state_first_to_last_into_a_gif(qtbot, window, tiny,
                                                                     tmp_path):
    from visualizer import animation
    from visualizer.views.layer_canvas import LayerCanvas
    view = show_ready(qtbot, window, "layers")
    view.set_layer(2)
    start, frames_drawn = view.slider.value(), view.frames
    view.speed.setValue(4.0)
    L = len(view.state_names()) - 1
    positions = animation.frame_positions(L, 4.0)
    assert positions[0] == 0 and positions[-1] == L and len(positions) == round(L * 25 / 4) + 1
    np.testing.assert_allclose(np.diff(positions), L / (len(positions) - 1))
    path = tmp_path / "layers.gif"
    assert window.save_layers_animation(path, size=(320, 240)) == len(positions)
    view.speed.setValue(1.0)
    # the view is left as it was: its position, untitled, nothing drawn on it
    assert view.slider.value() == start and view.frames == frames_drawn
    assert view.plot.getPlotItem().titleLabel.text == ""
    assert [p.name for p in tmp_path.iterdir()] == ["layers.gif"], "no part file left"
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    assert path.stat().st_mode & 0o777 == probe.stat().st_mode & 0o777, "made as any file"
    frames, durations = gif_frames(path)
    assert frames[0].shape == (240, 320, 3)
    # (Pillow merges equal neighbours, adding their times: the total is what counts)
    assert sum(durations) == 40 * len(positions) + 2000
    assert durations[0] == durations[-1] == 1040
    # the file holds the frames as drawn, in order (up to the shared palette's rounding
    # of colours), and drawing them again gives the same frames
    again = animation.record_layers(view, positions, (320, 240))
    if len(frames) == len(positions):
        for i, (frame, want) in enumerate(zip(frames, again)):
            assert np.abs(frame.astype(int) - want).mean() < 1.0, i
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 1.0, "the states differ"
    for frame in frames:
        assert frame.std() > 5, "not blank"
    # the canvas draws the view's states, blended between the two either side
    canvas = LayerCanvas()
    canvas.show(view)
    canvas.draw(view, 1.5)
    np.testing.assert_allclose(canvas.cloud.points,
                               0.5 * (view.cloud_states[1] + view.cloud_states[2]), atol=1e-5)
    assert canvas.plot.getPlotItem().getAxis("bottom").labelText == view.axis_labels(2)[0]


def test_layers_animation_cancelled_or_failing_writes_nothing(qtbot, window, tiny, tmp_path,
                                                             monkeypatch):
    from visualizer import animation
    view = show_ready(qtbot, window, "layers")
    calls = []
    assert animation.record_layers(view, [0.0, 1.0, 2.0], (200, 150),
                                   progress=lambda done, total: calls.append(done)) is None
    assert calls == [1], "stopped at the first False"
    with pytest.raises(animation.AnimationError,
                       match=r"written as a \.gif file; received '.*a\.webp'"):
        animation.save_layers_animation(view, tmp_path / "a.webp", (200, 150))
    with pytest.raises(animation.AnimationError, match="more than 1500"):
        animation.frame_positions(100, 0.1)
    # a failing write: the error is shown, the earlier file is kept, no part file is left
    path = tmp_path / "a.gif"
    path.write_bytes(b"earlier")
    written = []

    def full_disk(source, target):
        written.append(os.path.getsize(source))      # the part file, written in full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(headless.os, "replace", full_disk)
    window.error_box = None
    assert window.save_layers_animation(path, size=(200, 150)) is None
    assert "No space left" in window.error_box.text() and written[0] > 1000
    assert path.read_bytes() == b"earlier" and [p.name for p in tmp_path.iterdir()] == ["a.gif"]


def test_layers_animation_menu_action_and_what_it_says_without_states(qtbot, window, models):
    assert ("File", "Export layers animation", ["Ctrl+Shift+A"]) in window.shortcuts()
    action = next(a for a in window.menuBar().actions()[0].menu().actions()
                  if a.text().startswith("Export layers"))
    open_model(qtbot, window, models["notrace"])
    show_ready(qtbot, window, "density")
    assert not action.isEnabled(), "a Layers action: off while another view is shown"
    show_ready(qtbot, window, "layers")
    assert action.isEnabled()
    window.error_box = None
    window.export_animation_dialog()
    assert window.error_box.windowTitle() == "Nothing to animate"
    assert "no trace" in window.error_box.text()
    window.error_box.close()


def test_layers_animation_dialog_writes_a_gif_of_the_plots_shape(qtbot, window, tiny, tmp_path,
                                                                 monkeypatch):
    from PIL import Image
    from PySide6 import QtWidgets
    from visualizer.exporting import MAX_ANIMATION_SIDE
    view = show_ready(qtbot, window, "layers")
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(tmp_path / "warp"), "GIF animation (*.gif)"))
    view.speed.setValue(10.0)
    try:
        window.export_animation_dialog()
    finally:
        view.speed.setValue(1.0)
    w, h = window.animation_size()
    assert max(w, h) <= MAX_ANIMATION_SIDE
    assert abs(w / h - view.plot.width() / view.plot.height()) < 0.02, "the plot's shape"
    with Image.open(tmp_path / "warp.gif") as image:         # (".gif" added to the name)
        assert image.size == (w, h) and image.n_frames > 2


def test_layers_base_cloud_of_a_student_t_base_has_its_tails(qtbot, window, tmp_path):
    import kerasflows
    flow = kerasflows.models.RealNVP(2, num_layers=2, hidden_units=(8,), base="student_t")
    flow.base_log_df.assign(np.log([1.5, 50.0]).astype(np.float32))
    flow.save(tmp_path / "t.keras")
    info = open_model(qtbot, window, tmp_path / "t.keras")
    np.testing.assert_allclose(info["base_df"], [1.5, 50.0], rtol=1e-5)
    view = show_ready(qtbot, window, "layers")
    assert view.direction.currentData() == "forward"
    cloud = view._inputs()[2]
    assert np.abs(cloud[:, 0]).max() > 30, "df 1.5: heavy tails"
    assert np.abs(cloud[:, 1]).max() < 6, "df 50: nearly Gaussian"
    np.testing.assert_allclose(view.cloud_states[-1], flow.forward(cloud).numpy(), atol=1e-4)
    inspector = window.show_view("inspector")
    row = dict(x=np.zeros(2), z=np.zeros(2), log_p0=-1.0, log_dets=None, log_det_total=0.0,
               log_prob=-1.0)
    assert inspector._rows(row)[2][0] == "log p0(z), Student-t base (df 1.5, 50)"


def test_context_animation_records_the_view_at_each_value_of_the_sweep(qtbot, window, models,
                                                                       tmp_path):
    from visualizer import animation
    folder, flow = models["conditional"]
    with qtbot.waitSignal(window.model_opened, timeout=TIMEOUT_MS):
        assert window.open_path(folder, context=[0.5, -0.5])
    view = show_ready(qtbot, window, "samples")
    # what the frames below compare: the default cloud (500 points at temperature 0.7,
    # left by another test, moved 0.66 of a grey level a pixel between the ends)
    view.count.setValue(DEFAULT_COUNT)
    view.temperature.setValue(1.0)
    qtbot.waitUntil(lambda: view.is_ready() and len(view.points) == DEFAULT_COUNT,
                    timeout=TIMEOUT_MS)
    panel = window.context_panel
    low, high = panel.ranges[1]
    values = animation.context_values(low, high)
    assert len(values) == animation.CONTEXT_FRAMES and values[0] == low and values[-1] == high
    seen = []

    def progress(done, total):        # what the view drew for each frame
        seen.append((window.context.copy(), view.points.copy()))
        return True

    path = tmp_path / "sweep.gif"
    assert animation.save_context_animation(window, path, 1, progress) == len(values)
    assert [s.value() for s in panel.spins] == [0.5, -0.5], "the context put back"
    for (context, points), value in zip(seen[::16], values[::16]):
        np.testing.assert_allclose(context, [0.5, value], atol=0.006)   # (the box rounds)
        want = flow.sample(len(points), seed=view.seed, context=context[None],
                           temperature=view.temperature.value()).numpy()
        np.testing.assert_allclose(points, want, rtol=1e-4, atol=1e-4)
    frames, durations = gif_frames(path)
    assert len(frames) == len(values) and durations[0] == durations[-1] == 1040
    assert max(frames[0].shape[:2]) <= animation.MAX_CONTEXT_SIDE
    again = animation.record_context(window, 1, [values[0], values[-1]])
    for frame, want in zip((frames[0], frames[-1]), again):
        assert np.abs(frame.astype(int) - want).mean() < 1.5
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 1.0
    assert ("File", "Export context animation", ["Ctrl+Shift+C"]) in window.shortcuts()
    with pytest.raises(animation.AnimationError, match="has 2 coordinates; received "
                                                       "coordinate 3"):
        animation.save_context_animation(window, tmp_path / "x.gif", 2)
    open_model(qtbot, window, models["tiny"][0])             # not conditional
    window.error_box = None
    window.export_context_animation_dialog()
    assert window.error_box.windowTitle() == "No context to sweep"
    window.error_box.close()
