"""`kerasflows.pictures`: a flow's density, samples and image rows as RGB arrays."""

import re

import numpy as np
import pytest
import tensorflow as tf

import kerasflows
from kerasflows import pictures as P
from kerasflows.testing import perturb_weights

REGION = (-3.0, 3.0, -2.0, 2.0)


@pytest.fixture(scope="module")
def flow():
    flow = kerasflows.models.RealNVP(2, num_layers=2, hidden_units=(16,))
    perturb_weights(flow, 0.3, seed=0)
    return flow


def test_colorize_runs_through_viridis_from_low_to_high():
    got = P.colorize([-1.0, 0.0, 0.5, 1.0, 2.0, np.nan], 0.0, 1.0)
    assert got.dtype == np.uint8 and got.shape == (6, 3)
    np.testing.assert_array_equal(got[[0, 1, 5]], np.repeat(P.VIRIDIS[:1], 3, 0))
    np.testing.assert_array_equal(got[[3, 4]], np.repeat(P.VIRIDIS[-1:], 2, 0))
    # 0.5 lies halfway between the 5th and 6th of the ten stops
    np.testing.assert_array_equal(got[2], np.round((P.VIRIDIS[4] + P.VIRIDIS[5]) / 2))


def test_pixel_centres_start_at_the_top_left():
    points = P.pixel_centres(REGION, 4)
    assert points.shape == (16, 2)
    np.testing.assert_allclose(points[0], [-2.25, 1.5])       # top left
    np.testing.assert_allclose(points[3], [2.25, 1.5])        # top right
    np.testing.assert_allclose(points[-1], [2.25, -1.5])      # bottom right


def test_density_picture_colours_the_flows_log_density(flow):
    picture, (low, high) = P.density_picture(flow, REGION, resolution=32, span=8.0)
    log_p = flow.log_prob(P.pixel_centres(REGION, 32)).numpy()
    assert picture.shape == (32, 32, 3) and picture.dtype == np.uint8
    assert high == pytest.approx(log_p.max()) and low == pytest.approx(log_p.max() - 8.0)
    np.testing.assert_array_equal(picture, P.colorize(log_p, low, high).reshape(32, 32, 3))
    top = np.unravel_index(np.argmax(log_p), (32, 32))
    np.testing.assert_array_equal(picture[top], P.VIRIDIS[-1])
    with pytest.raises(ValueError, match="draws 2-D flows; this flow has event_dim=3"):
        P.density_picture(kerasflows.models.MAF(3, num_layers=1), REGION)
    assert P.range_text(low, high) == f"log p(x) from {low:.2f} (dark) to {high:.2f} (bright) nats"
    # a region where no log-density is finite: all dark, and no range made up for it
    # (it said "from -10.00 (dark) to 0.00 (bright)", a maximum never measured)
    far, (low, high) = P.density_picture(flow, (1e20, 2e20, 1e20, 2e20), resolution=4)
    assert np.isnan(low) and np.isnan(high)
    assert (far == P.VIRIDIS[0]).all()
    assert P.range_text(low, high) == "no finite log p(x) in the region (every pixel dark)"


def test_density_picture_dims_put_the_second_coordinate_across(flow):
    picture, (low, high) = P.density_picture(flow, REGION, resolution=16, dims=(1, 0))
    log_p = flow.log_prob(P.pixel_centres(REGION, 16)[:, ::-1].copy()).numpy()
    np.testing.assert_array_equal(picture, P.colorize(log_p, low, high).reshape(16, 16, 3))
    with pytest.raises(ValueError, match=r"dims must be \(0, 1\) or \(1, 0\).*dims=\(0, 0\)"):
        P.density_picture(flow, REGION, dims=(0, 0))


def test_density_picture_of_a_conditional_flow_is_drawn_at_its_context():
    flow = kerasflows.models.RealNVP(2, num_layers=2, hidden_units=(8,), context_dim=1)
    perturb_weights(flow, 0.5, seed=1)
    a, (low, high) = P.density_picture(flow, REGION, 16, context=[1.0])
    b, _ = P.density_picture(flow, REGION, 16, context=[[-1.0]])
    log_p = flow.log_prob(P.pixel_centres(REGION, 16), context=np.ones((256, 1))).numpy()
    np.testing.assert_array_equal(a, P.colorize(log_p, low, high).reshape(16, 16, 3))
    assert np.abs(a.astype(int) - b.astype(int)).max() > 0
    # a context the flow cannot take gets the flow's message (a TypeError of `<` on
    # None, or NumPy's broadcast error, before)
    with pytest.raises(ValueError, match=r"expected context of shape \(batch, 1\); received "
                                         r"shape \(1, 2\)"):
        P.density_picture(flow, REGION, 16, context=[1.0, 2.0])
    # several rows: named as given (they were read as one row of their values, (1, 2))
    with pytest.raises(ValueError, match=r"one context, \[C\] or \[1, C\]; received shape "
                                         r"\(2, 1\)"):
        P.density_picture(flow, REGION, 16, context=[[1.0], [2.0]])
    unconditional = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,))
    with pytest.raises(ValueError, match=r"not conditional \(context_dim=None\)"):
        P.density_picture(unconditional, REGION, 16, context=[1.0])


def test_the_module_example_writes_a_png(flow, tmp_path):
    """The module docstring's example, as written (it passed the tuple to encode_png)."""
    example = P.__doc__.split("```python")[1].split("```")[0]
    example = example.replace('"density.png"', repr(str(tmp_path / "density.png")))
    exec(example, {"kerasflows": kerasflows, "flow": flow})
    assert (tmp_path / "density.png").read_bytes().startswith(b"\x89PNG")


def test_samples_picture_puts_each_point_in_its_pixel():
    points = np.array([[-2.9, 1.9], [2.9, -1.9], [2.9, -1.9], [9.0, 0.0]])  # last: outside
    picture = P.samples_picture(points, REGION, resolution=6)
    assert picture.shape == (6, 6, 3)
    np.testing.assert_array_equal(picture[5, 5], P.VIRIDIS[-1])          # two points
    assert 0 < picture[0, 0].astype(int).sum() != P.VIRIDIS[0].sum()      # one point
    lit = (picture != P.VIRIDIS[0].astype(np.uint8)).any(-1)
    assert lit.sum() == 2
    wide = np.zeros((3, 4))
    wide[:, 2], wide[:, 3] = 1.0, -1.0
    np.testing.assert_array_equal(P.samples_picture(wide, REGION, 4, dims=(2, 3)),
                                  P.samples_picture(wide[:, 2:], REGION, 4))
    with pytest.raises(ValueError, match=r"dims must be two different dimensions of the "
                                         r"4-D points; received dims=\(1, 1\)"):
        P.samples_picture(wide, REGION, 4, dims=(1, 1))


def test_tile_lays_images_out_from_the_top_left():
    rows = np.arange(3 * 4, dtype=np.float32).reshape(3, 4) + 1     # three 2x2 images
    got = P.tile(rows, (2, 2), columns=2, gap=1, fill=0.0)
    want = np.array([[1, 2, 0, 5, 6],
                     [3, 4, 0, 7, 8],
                     [0, 0, 0, 0, 0],
                     [9, 10, 0, 0, 0],
                     [11, 12, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(got, want)
    assert P.tile(rows, (2, 2), gap=0).shape == (4, 4)
    with pytest.raises(ValueError, match=r"rows must have shape \[n, 4\]"):
        P.tile(rows[:, :3], (2, 2))


def test_image_grid_draws_grey_levels_scaled_with_thin_gaps():
    rows = np.array([[0.0, 1.0, 2.0, 3.0], [3.0, 3.0, 0.0, 0.0]])
    got = P.image_grid(rows, (2, 2), levels=(0.0, 2.0), columns=2, scale=4)
    assert got.shape == (8, 8 + 2 + 8, 3) and (got[..., 0] == got[..., 2]).all()
    np.testing.assert_array_equal(got[:4, :4, 0], 0)                 # black: at the black level
    np.testing.assert_array_equal(got[:4, 4:8, 0], 128)             # half way
    np.testing.assert_array_equal(got[4:, :8, 0], 255)              # above white: white
    np.testing.assert_array_equal(got[:, 8, 0], 128)                # the gap


def test_region_of_holds_the_points_with_a_margin():
    points = np.random.default_rng(0).normal(size=(10_000, 3)) * [1.0, 5.0, 1.0]
    x0, x1, y0, y1 = P.region_of(points, dims=(0, 1))
    inside = ((points[:, 0] > x0) & (points[:, 0] < x1) & (points[:, 1] > y0)
              & (points[:, 1] < y1)).mean()
    assert inside > 0.995 and 4 < (y1 - y0) / (x1 - x0) < 6
    x0, x1, y0, y1 = P.region_of(points * 1e-5, dims=(0, 1))    # small units: their own
    assert 4 < (y1 - y0) / (x1 - x0) < 6 and x1 - x0 < 1e-4


def test_png_round_trip_and_bad_arguments():
    picture = P.colorize(np.linspace(0, 1, 12).reshape(3, 4), 0, 1)
    np.testing.assert_array_equal(tf.io.decode_png(P.encode_png(picture)).numpy(), picture)
    for region in [(1, 0, 0, 1), (0, 1, 0, np.inf), "abc"]:
        with pytest.raises(ValueError, match="region must be"):
            P.pixel_centres(region, 4)
    for resolution in [1, 4.0, True, 10_000]:
        with pytest.raises(ValueError, match="resolution must be an integer in"):
            P.pixel_centres(REGION, resolution)


def test_pairs_picture_draws_samples_below_data_above_and_marginals_between():
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(4000, 3)) * [1.0, 2.0, 0.5]
    data = rng.normal(size=(1000, 3)) * [1.0, 2.0, 0.5] + [0.0, 0.0, 1.0]
    picture, ranges = P.pairs_picture(samples, data, dims=[0, 2], cell=40)
    assert picture.shape == (84, 84, 3)                     # 2 cells of 40, a 4-pixel gap
    np.testing.assert_allclose(ranges, P.pairs_ranges(data, [0, 2]))
    (x0, x1), (z0, z1) = ranges
    np.testing.assert_array_equal(picture[44:, :40], P.samples_picture(      # row x3, column x1
        samples[:, [0, 2]], (x0, x1, z0, z1), 40))
    np.testing.assert_array_equal(picture[:40, 44:], P.samples_picture(      # row x1, column x3
        data[:, [2, 0]], (z0, z1, x0, x1), 40))
    np.testing.assert_array_equal(picture[40:44], np.broadcast_to(P.GAP_COLOUR, (4, 84, 3)))
    # the diagonal: the samples' marginal filled, the data's drawn as a line over it
    marginal = picture[:40, :40]
    filled = (marginal == P.SAMPLES_COLOUR).all(-1)
    line = (marginal == P.DATA_COLOUR).all(-1)
    assert filled[-1, 10:30].all() and not filled[0].any() and line.any()
    heights = filled.sum(0)
    assert heights[18:22].mean() > 3 * heights[:4].mean()   # a bell around the centre
    # x3's data sit higher than its samples: its line peaks right of the fill's peak
    x3 = picture[44:, 44:]
    fill_peak = np.argmax((x3 == P.SAMPLES_COLOUR).all(-1).sum(0))
    line_rows = [np.flatnonzero((x3[:, c] == P.DATA_COLOUR).all(-1)) for c in range(40)]
    line_peak = np.argmin([r.min() if len(r) else 99 for r in line_rows])
    assert line_peak > fill_peak
    alone, _ = P.pairs_picture(samples, cell=40)            # no data: the upper cells blank
    assert alone.shape == (128, 128, 3)
    assert (alone[:40, 44:] == P.GAP_COLOUR).all() and not (alone[44:84, :40] ==
                                                              P.GAP_COLOUR).all()
    for kwargs, message in [({"dims": [0, 0]}, r"1 to 6 different coordinates of the 3-D"),
                            ({"dims": [3]}, r"received dims=\[3\]"),
                            ({"data": data[:, :2]}, r"data must have shape \[n, 3\]")]:
        with pytest.raises(ValueError, match=message):
            P.pairs_picture(samples, **{"cell": 8, **kwargs})
    # ranges: NumPy said "list index out of range", "bins must increase monotonically"
    for ranges in ([(0, 1)], [(1, 0)] * 3, [(0, np.inf)] * 3, 5, [(0, 1, 2)] * 3,
                   [("a", "b")] * 3, [(0, 1)] * 4):
        with pytest.raises(ValueError, match=r"ranges must be one \(lo, hi\) per coordinate of "
                           r"dims=\[0, 1, 2\] \(3\), finite with lo < hi; received ranges="):
            P.pairs_picture(samples, cell=8, ranges=ranges)
    given = np.array([(-1, 1), (-2, 2), (0, 3)], np.float32)
    assert P.pairs_picture(samples, cell=8, ranges=given)[1] == [(-1, 1), (-2, 2), (0, 3)]


def test_image_grid_with_reversed_levels_draws_the_greys_inverted():
    # white below black divided by a floor of 1e-12: every pixel black or white
    rows = np.array([[0.0, 0.5, 1.0, 2.0]])
    plain = P.image_grid(rows, (2, 2), levels=(0.0, 2.0))
    inverted = P.image_grid(rows, (2, 2), levels=(2.0, 0.0))
    np.testing.assert_allclose(inverted.astype(int), 255 - plain.astype(int), atol=1)
    assert len(np.unique(inverted)) == 4
    for bad in ((1.0, 1.0), (0.0, np.inf), (np.nan, 1.0)):
        with pytest.raises(ValueError, match=r"`levels` must be two different finite values"):
            P.image_grid(rows, (2, 2), levels=bad)
    # no rows: named (NumPy's "zero-size array to reduction operation" before)
    with pytest.raises(ValueError, match=r"n >= 1, for images of shape \(2, 2\); received "
                                         r"\(0, 4\)"):
        P.image_grid(np.zeros((0, 4)), (2, 2))


def test_density_picture_refuses_a_span_that_is_not_a_positive_number(flow):
    # a span of -10, 0 or NaN gave a one-colour picture with low > high, or NaN
    for span in (-10.0, 0, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match=r"`span` must be a finite number of nats > 0\. "
                                             rf"Received: span={span!r}"):
            P.density_picture(flow, REGION, resolution=8, span=span)
    _, (low, high) = P.density_picture(flow, REGION, resolution=8, span=np.float32(5))
    assert high - low == pytest.approx(5.0)


def test_dims_must_be_integers_not_floats_or_bools(flow):
    # floats were truncated (0.5, 1.5 -> 0, 1) or failed in NumPy's indexing
    points = np.random.default_rng(1).normal(size=(50, 3))
    for dims in ((0.5, 1.5), (True, False), (0.0, 1.0)):
        with pytest.raises(ValueError, match=rf"`dims` must be integers\. Received: "
                                             rf"dims={re.escape(repr(dims))}"):
            P.samples_picture(points, REGION, 4, dims=dims)
        with pytest.raises(ValueError, match=r"`dims` must be integers"):
            P.density_picture(flow, REGION, 4, dims=dims)
    with pytest.raises(ValueError, match=r"`dims` must be integers\. Received: "
                                         r"dims=\(0\.5, 1\.5, 2\.5\)"):
        P.pairs_picture(points, dims=(0.5, 1.5, 2.5), cell=8)
    np.testing.assert_array_equal(P.samples_picture(points, REGION, 4, dims=np.int64([0, 2])),
                                  P.samples_picture(points, REGION, 4, dims=(0, 2)))
    np.testing.assert_array_equal(P.pairs_picture(points, dims=np.int64([2, 0]), cell=8)[0],
                                  P.pairs_picture(points, dims=[2, 0], cell=8)[0])
    with pytest.raises(ValueError, match=r"dims must be two different dimensions.*dims=\(0,\)"):
        P.samples_picture(points, REGION, 4, dims=(0,))


def test_image_grid_scale_and_columns_must_be_positive_integers():
    # scale=0 drew a 1x1 picture and 2.5 drew at 2; columns=0 meant "default"
    rows = np.random.default_rng(0).random((4, 6))
    for name, bad in [("scale", 0), ("scale", -1), ("scale", 2.5), ("scale", True),
                      ("columns", 0), ("columns", -1), ("columns", 2.5)]:
        with pytest.raises(ValueError, match=rf"`{name}` must be an integer >= 1\. "
                                             rf"Received: {name}={bad!r}"):
            P.image_grid(rows, (2, 3), **{name: bad})
    np.testing.assert_array_equal(P.image_grid(rows, (2, 3), scale=np.int64(2), columns=np.int64(2)),
                                  P.image_grid(rows, (2, 3), scale=2, columns=2))


@pytest.mark.parametrize("kwargs, match", [
    ({"coverage": 0}, r"`coverage` must be a finite number in \(0, 1\]\. Received: coverage=0"),
    ({"coverage": 1.5}, r"Received: coverage=1\.5"),
    ({"coverage": float("nan")}, r"Received: coverage=nan"),
    ({"margin": -0.6}, r"`margin` must be a finite number >= 0\. Received: margin=-0\.6"),
    ({"margin": float("nan")}, r"Received: margin=nan"),
    # an IndexError before
    ({"dims": (0, 5)}, r"two of their columns as dims; received shape \(100, 2\) and "
                       r"dims=\(0, 5\)"),
    ({"dims": (0,)}, r"dims=\(0,\)"),
])
def test_region_of_refuses_a_bad_coverage_or_margin_naming_it(kwargs, match):
    # coverage 0 or -1 and a negative or NaN margin were taken silently (an empty or
    # inside-out region); coverage 1.5 failed with NumPy's 'Quantiles must be in [0, 1]'
    points = np.random.default_rng(0).standard_normal((100, 2))
    with pytest.raises(ValueError, match=match):
        P.region_of(points, **kwargs)
    lo, hi, _, _ = P.region_of(points, coverage=1, margin=0)
    assert (lo, hi) == (points[:, 0].min(), points[:, 0].max())
    with pytest.raises(ValueError, match="side_by_side needs at least one picture"):
        P.side_by_side([])          # ("max() arg is an empty sequence")


def test_image_grid_and_encode_png_name_what_they_take():
    """image_grid's shape (np.sqrt(64) for 8 was a TypeError deep in NumPy, (8,) and 64
    unpacking errors, (0, 5) a NumPy reduction error); encode_png of floats in [0, 1]
    drew black, of 300 wrapped to 44, of a grey [H, W] failed inside TensorFlow."""
    rows = np.zeros((2, 64))
    for shape in ((np.sqrt(64), np.sqrt(64)), (8,), 64, (0, 5), (-8, -8), ("8", "8")):
        with pytest.raises(ValueError, match=r"`shape` must be \(height, width\) of positive "
                                             r"integers; received"):
            P.image_grid(rows, shape)
    assert P.image_grid(rows, (np.int64(8), 8)).shape == (8, 17, 3)
    for picture in (np.full((4, 4, 3), 0.5), np.full((4, 4, 3), 300), np.zeros((4, 4), np.uint8)):
        with pytest.raises(ValueError, match=r"picture must be uint8 \[H, W, 3\] \(RGB\)"):
            P.encode_png(picture)
    assert P.encode_png(np.zeros((4, 4, 3), np.uint8)).startswith(b"\x89PNG")
