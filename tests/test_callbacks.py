"""`kerasflows.callbacks.FlowImages`: pictures of the flow in TensorBoard while it trains."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import kerasflows
from kerasflows import pictures as P
from kerasflows.callbacks import FlowImages, read_frames


def read_images(run_dir):
    """`{tag: [(step, picture, description), ...]}` of a TensorBoard run."""
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    events.Reload()
    out = {}
    for tag in events.Tags()["tensors"]:
        if events.SummaryMetadata(tag).plugin_data.plugin_name != "images":
            continue
        out[tag] = [(e.step, tf.io.decode_png(e.tensor_proto.string_val[2]).numpy(),
                     events.SummaryMetadata(tag).summary_description)
                    for e in events.Tensors(tag)]
    return out


def read_texts(run_dir, tag):
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    events.Reload()
    return [(e.step, tf.make_ndarray(e.tensor_proto).item().decode())
            for e in events.Tensors(tag)]


def read_scalars(run_dir, tag="epoch_loss"):
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    events.Reload()
    return [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]


def test_pictures_of_a_2d_flow_every_other_epoch_and_after_the_last(tmp_path):
    x = kerasflows.datasets.load("moons", n=2048, seed=0)
    flow = kerasflows.models.RealNVP(2, num_layers=2, hidden_units=(16,))
    # a plain graph step: the pictures are drawn after the epochs, whatever runs them
    flow.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    images = FlowImages(tmp_path, data=x, every=2, resolution=48, samples=3000, seed=3)
    flow.fit(x, batch_size=256, epochs=5, verbose=0,
             callbacks=[keras.callbacks.TensorBoard(str(tmp_path)), images])
    shown = read_images(tmp_path / "flow")
    assert sorted(shown) == ["data", "density", "samples"]
    assert [s for s, _, _ in shown["data"]] == [0]
    assert [s for s, _, _ in shown["samples"]] == [1, 3, 4]     # epochs 2, 4 and the last
    assert [s for s, _, _ in shown["density"]] == [1, 3, 4]
    region = P.region_of(x)
    assert images.region == pytest.approx(region)
    np.testing.assert_array_equal(shown["data"][0][1], P.samples_picture(x, region, 48))
    # the last frames are the trained flow's own pictures
    density, (low, high) = P.density_picture(flow, region, 48)
    np.testing.assert_array_equal(shown["density"][-1][1], density)
    np.testing.assert_array_equal(shown["samples"][-1][1],
                                  P.samples_picture(flow.sample(3000, seed=3), region, 48))
    assert np.abs(shown["density"][0][1].astype(int) - density.astype(int)).max() > 0
    assert "x1 in [{:.3g}, {:.3g}]".format(*region[:2]) in shown["density"][-1][2]
    ranges = read_texts(tmp_path / "flow", "density_range")
    assert [s for s, _ in ranges] == [1, 3, 4]
    assert ranges[-1][1] == f"after epoch 5: log p(x) from {low:.2f} (dark) to {high:.2f} (bright) nats"
    # Keras' own TensorBoard callback wrote the loss beside them
    assert os.listdir(tmp_path / "train")
    # read back for your own figures
    frames = kerasflows.callbacks.read_frames(tmp_path)
    assert [s for s, _ in frames] == [1, 3, 4]
    np.testing.assert_array_equal(frames[-1][1], density)
    # the pictures' tags only: the text beside them has no PNG (IndexError)
    for tag in ("images", "density_range"):
        with pytest.raises(ValueError, match=f"no FlowImages pictures named '{tag}'; found "
                                             r"\['data', 'density', 'samples'\]"):
            kerasflows.callbacks.read_frames(tmp_path, tag)


def test_a_wider_flow_gets_every_pair_of_its_coordinates(tmp_path):
    x = kerasflows.datasets.load("moons4d", n=1024, seed=0)
    flow = kerasflows.models.RealNVP(4, num_layers=2, hidden_units=(16,))
    flow.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    images = FlowImages(tmp_path, data=x, resolution=24, samples=800, seed=1)
    flow.fit(x, batch_size=256, epochs=2, verbose=0, callbacks=[images])
    shown = read_images(tmp_path / "flow")
    assert sorted(shown) == ["data", "pairs", "samples"]        # (no density in 4-D)
    assert [s for s, _, _ in shown["pairs"]] == [0, 1]
    dims = (0, 1, 2, 3)
    ranges = P.pairs_ranges(x, dims)                              # fixed by the data
    want, _ = P.pairs_picture(flow.sample(800, seed=1).numpy(), x, dims, 24, ranges)
    np.testing.assert_array_equal(shown["pairs"][-1][1], want)
    assert np.abs(shown["pairs"][0][1].astype(int) - want.astype(int)).max() > 0
    description = shown["pairs"][0][2]
    assert description.startswith("every pair of x1, x2, x3, x4: 800 samples below the "
                                  "diagonal, the data above it")
    assert f"x4 in [{ranges[3][0]:.3g}, {ranges[3][1]:.3g}]" in description
    frames = read_frames(tmp_path, "pairs")
    np.testing.assert_array_equal(frames[-1][1], want)
    # chosen coordinates, or none
    few = FlowImages(tmp_path / "few", resolution=16, samples=200, pairs=(3, 1))
    none = FlowImages(tmp_path / "none", resolution=16, samples=200, pairs=())
    flow.fit(x, batch_size=512, epochs=1, verbose=0, callbacks=[few, none])
    assert read_frames(tmp_path / "few", "pairs")[0][1].shape == (2 * 16 + 4, 2 * 16 + 4, 3)
    assert "pairs" not in read_images(tmp_path / "none" / "flow")


def test_an_image_shaped_flow_is_drawn_as_pictures(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, size=(512, 16)).astype(np.float32)
    flow = kerasflows.models.MAF(16, num_layers=1, hidden_units=(16,))
    images = FlowImages(tmp_path, data=x, image_shape=(4, 4), samples=100)
    images.set_model(flow)
    images.on_train_begin()
    images.draw(0)
    images.on_train_end()
    shown = read_images(tmp_path / "flow")
    assert sorted(shown) == ["data", "samples"]                  # no density for 16-D
    # the 64 pictures are the samples drawn (it said "100 samples ..., 64 shown")
    assert shown["samples"][0][2].startswith("64 samples (seed 0: ")
    assert shown["samples"][0][2].endswith(", as (4, 4) pictures")
    assert "64 shown as (4, 4) pictures" in shown["data"][0][2]
    paired = FlowImages(tmp_path / "paired", image_shape=(4, 4), samples=500, pairs=(0, 1))
    paired.set_model(flow)
    paired.on_train_begin()
    paired.draw(0)
    paired.on_train_end()
    assert read_images(tmp_path / "paired" / "flow")["pairs"][0][2].startswith(
        "every pair of x1, x2: 64 samples below the diagonal")     # it said 500
    scale = 96 // 4
    want = P.image_grid(flow.sample(100, seed=0).numpy()[:64], (4, 4), (x.min(), x.max()),
                        scale=scale)
    np.testing.assert_array_equal(shown["samples"][0][1], want)
    # a 2-D flow drawn as (1, 2) pictures: its density too, around its samples (no region
    # was set: "region must be (xmin, xmax, ymin, ymax); received region=None")
    plane = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(4,))
    pair = FlowImages(tmp_path / "pair", image_shape=(1, 2), samples=100)
    pair.set_model(plane)
    pair.on_train_begin()
    pair.draw(0)
    pair.on_train_end()
    assert sorted(read_images(tmp_path / "pair" / "flow")) == ["density", "samples"]
    assert shown["data"][0][1].shape == want.shape == (8 * 96 + 7 * 12, 8 * 96 + 7 * 12, 3)


def test_a_conditional_flow_is_drawn_at_the_given_context(tmp_path):
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,), context_dim=1)
    kerasflows.testing.perturb_weights(flow, 0.5, seed=0)
    images = FlowImages(tmp_path, region=(-3, 3, -3, 3), context=[2.0], resolution=16)
    images.set_model(flow)
    images.on_train_begin()
    images.draw(7)
    images.on_train_end()
    shown = read_images(tmp_path / "flow")
    assert [s for s, _, _ in shown["density"]] == [7]
    want, _ = P.density_picture(flow, (-3, 3, -3, 3), 16, context=[2.0])
    np.testing.assert_array_equal(shown["density"][0][1], want)


def test_bad_settings_raise_naming_what_was_expected(tmp_path):
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,), context_dim=1)
    for make, message in [
            (lambda: FlowImages(tmp_path, every=0), r"`every` must be an integer >= 1. Received: every=0"),
            (lambda: FlowImages(tmp_path, region=(0, 0, 0, 1)), "region must be finite"),
            (lambda: FlowImages(tmp_path, data=np.zeros(5)), r"data` must have shape \[n, D\]"),
            # fit's (x, context): NumPy's error of an inhomogeneous shape
            (lambda: FlowImages(tmp_path, data=(np.zeros((9, 2)), np.zeros((9, 1)))),
             r"`data` takes the x array only, \[n, D\]; received a pair of arrays \(shapes "
             r"\(9, 2\) and \(9, 1\)\), as fit's \(x, context\)"),
            (lambda: FlowImages(tmp_path, image_shape=(2,)),
             r"`image_shape` must be \(height, width\).*\(2,\)"),
            (lambda: FlowImages(tmp_path, span=0), r"`span` must be a finite number .*0"),
            # taken, then refused after an epoch of training
            (lambda: FlowImages(tmp_path, image_shape=(2, 2), image_levels=(1, 1)),
             r"`image_levels` must be two different finite values \(black, white\)\. "
             r"Received: image_levels=\(1, 1\)"),
            (lambda: FlowImages(tmp_path, image_levels="ab"), r"image_levels='ab'"),
            # no rows: refused after an epoch, "need at least one array to concatenate"
            (lambda: FlowImages(tmp_path, contexts=np.zeros((0, 1))),
             r"`contexts` must have shape \[K, C\] with K >= 1; received \(0, 1\)")]:
        with pytest.raises(ValueError, match=message):
            make()
    # a context for an unconditional flow: refused before training, not after an epoch
    plain = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,))
    images = FlowImages(tmp_path, context=[1.0])
    images.set_model(plain)
    with pytest.raises(ValueError, match="not conditional, so it takes no context"):
        images.on_train_begin()
    with pytest.raises(ValueError, match="no such folder"):
        read_frames(tmp_path / "nowhere")
    for images, message in [
            (FlowImages(tmp_path), r"conditional \(context_dim=1\): give FlowImages one context"),
            (FlowImages(tmp_path, context=[0.0], data=np.zeros((4, 3))),
             "`data` has 3 columns; the flow has event_dim=2"),
            (FlowImages(tmp_path, context=[0.0], image_shape=(2, 2)),
             r"image_shape=\(2, 2\) holds 4 values; the flow has event_dim=2"),
            (FlowImages(tmp_path, context=[0.0], pairs=(0, 2)),
             r"pairs must be 1 to 6 different dimensions of the 2-D flow; received "
             r"pairs=\(0, 2\)")]:
        images.set_model(flow)
        with pytest.raises(ValueError, match=message):
            images.on_train_begin()
    wrapper = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    images = FlowImages(tmp_path)
    images.set_model(wrapper)
    with pytest.raises(ValueError, match="the model is Sequential: pass the flow it holds"):
        images.on_train_begin()


def test_dims_shapes_and_pairs_must_be_integers_not_truncated(tmp_path):
    # floats were truncated (dims=(0.7, 1.9) drew (0, 1), image_shape=(8.9, 8.2) drew
    # 8x8) and bools taken as 1 and 0
    for kwargs, message in [
            ({"dims": (0.7, 1.9)}, r"`dims` must be integers\. Received: dims=\(0\.7, 1\.9\)"),
            ({"dims": (True, False)}, r"`dims` must be integers\. Received: dims=\(True, False\)"),
            ({"pairs": (0.5, 1.5, 2.5)}, r"`pairs` must be integers\. Received: pairs=\(0\.5"),
            ({"image_shape": (8.9, 8.2)},
             r"`image_shape` must be \(height, width\) of positive integers; received \(8\.9"),
            ({"image_shape": (True, 4)}, r"`image_shape` must be \(height, width\)"),
            ({"span": -10.0}, r"`span` must be a finite number of nats > 0\. Received: "
                              r"span=-10\.0")]:
        with pytest.raises(ValueError, match=message):
            FlowImages(tmp_path, **kwargs)
    images = FlowImages(tmp_path, dims=np.int64([1, 0]), image_shape=np.int64([4, 4]),
                        pairs=np.int64([2, 0]), span=np.float32(5))
    assert (images.dims, images.image_shape, images.pairs, images.span) == ((1, 0), (4, 4),
                                                                            (2, 0), 5.0)
    assert all(type(v) is int for v in images.dims + images.image_shape + images.pairs)


def test_a_forward_only_flow_gets_samples_but_no_density(tmp_path):
    flow = kerasflows.Flow([kerasflows.layers.Planar(), kerasflows.layers.Planar()], 2)
    images = FlowImages(tmp_path, region=(-4, 4, -4, 4), resolution=16, samples=500)
    images.set_model(flow)
    images.on_train_begin()
    images.on_epoch_begin(0)
    images.on_train_end()                                     # draws the epoch not drawn yet
    shown = read_images(tmp_path / "flow")
    assert sorted(shown) == ["samples"] and [s for s, _, _ in shown["samples"]] == [0]
    np.testing.assert_array_equal(shown["samples"][0][1], P.samples_picture(
        flow.sample(500, seed=0).numpy(), (-4, 4, -4, 4), 16))


def test_a_class_conditional_image_flow_is_drawn_one_row_per_label(tmp_path):
    from kerasflows.callbacks import ROW
    flow = kerasflows.models.MAF(16, num_layers=1, hidden_units=(8,), context_dim=1,
                                 context_encoder=kerasflows.layers.ClassEmbedding(3, 4))
    kerasflows.testing.perturb_weights(flow, 0.3, seed=0)
    labels = np.arange(3, dtype=np.float32)[:, None]
    images = FlowImages(tmp_path, context=[0.0], contexts=labels, image_shape=(4, 4),
                        image_levels=(-2, 2), seed=4)
    images.set_model(flow)
    images.on_train_begin()
    images.draw(2)
    images.on_train_end()
    shown = read_images(tmp_path / "flow")
    rows = np.concatenate([flow.sample(ROW, context=[[k]], seed=4).numpy() for k in range(3)])
    want = P.image_grid(rows, (4, 4), (-2, 2), columns=ROW, scale=24)
    np.testing.assert_array_equal(shown["samples"][0][1], want)
    assert want.shape[0] == 3 * 96 + 2 * 12                     # three rows of pictures
    assert "10 samples at each of 3 contexts, one row each" in shown["samples"][0][2]
    wrong = FlowImages(tmp_path, contexts=np.zeros((3, 2)), image_shape=(4, 4))
    wrong.set_model(flow)
    with pytest.raises(ValueError, match=r"at contexts of 1 values each; received contexts "
                                         r"of shape \(3, 2\)"):
        wrong.on_train_begin()


def test_a_2d_conditional_flow_is_drawn_at_each_context_left_to_right(tmp_path):
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,), context_dim=1)
    kerasflows.testing.perturb_weights(flow, 0.5, seed=0)
    region, contexts = (-3, 3, -3, 3), np.array([[-1.0], [1.5]], np.float32)
    images = FlowImages(tmp_path, region=region, contexts=contexts, resolution=16,
                        samples=300, seed=2)                   # no context= needed
    images.set_model(flow)
    images.on_train_begin()
    images.draw(0)
    images.on_train_end()
    shown = read_images(tmp_path / "flow")
    drawn = [P.density_picture(flow, region, 16, context=c, span=10.0) for c in contexts]
    np.testing.assert_array_equal(shown["density"][0][1],
                                  P.side_by_side([picture for picture, _ in drawn]))
    np.testing.assert_array_equal(shown["samples"][0][1], P.side_by_side([
        P.samples_picture(flow.sample(300, context=c[None], seed=2).numpy(), region, 16)
        for c in contexts]))
    assert shown["density"][0][1].shape == (16, 2 * 16 + 8, 3)
    assert "left to right at the contexts [-1.0], [1.5]" in shown["density"][0][2]
    low, high = drawn[1][1]
    assert read_texts(tmp_path / "flow", "density_range")[0][1].endswith(
        f"c = [1.5]: log p(x) from {low:.2f} (dark) to {high:.2f} (bright) nats")


def test_samples_that_are_not_finite_do_not_stop_training(tmp_path):
    """A flow whose samples are all NaN (diverged) is drawn on the base's usual range."""
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,))
    flow.flow_layers[0].net.out.bias.assign(np.full(2, np.nan, np.float32))
    images = FlowImages(tmp_path, resolution=8, samples=50)
    images.set_model(flow)
    images.on_train_begin()
    images.draw(0)
    images.on_train_end()
    assert images.region == (-4.0, 4.0, -4.0, 4.0)
    shown = read_images(tmp_path / "flow")
    assert (shown["samples"][0][1] == P.VIRIDIS[0].astype(np.uint8)).all()   # nothing drawn
    assert (shown["density"][0][1] == P.VIRIDIS[0].astype(np.uint8)).all()


def test_a_nan_row_of_image_data_leaves_the_grey_levels_and_is_drawn_red(tmp_path):
    """The levels came from data.min() and max(): one NaN made both NaN, and every
    picture came out black (training went on)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, size=(64, 4)).astype(np.float32)
    flow = kerasflows.models.MAF(4, num_layers=1, hidden_units=(8,))
    pictures = {}
    for name, data in (("clean", x), ("nan", np.concatenate([x, np.full((1, 4), np.nan)]))):
        images = FlowImages(tmp_path / name, data=data, image_shape=(2, 2), samples=16)
        images.set_model(flow)
        images.on_train_begin()
        images.draw(0)
        images.on_train_end()
        pictures[name] = read_images(tmp_path / name / "flow")
    np.testing.assert_array_equal(pictures["nan"]["samples"][0][1],
                                  pictures["clean"]["samples"][0][1])
    assert len(np.unique(pictures["nan"]["samples"][0][1])) > 8
    grid = P.image_grid(np.array([[0.0, np.nan, 1.0, 0.5]]), (2, 2))
    assert grid[0, 1].tolist() == [255, 0, 0] and grid[0, 0].tolist() == [0, 0, 0]


def test_contexts_without_data_get_a_region_around_every_contexts_samples(tmp_path):
    """The region came from the first context's samples alone: a second context far
    from it drew an empty panel."""
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,), context_dim=1)
    kerasflows.testing.perturb_weights(flow, 0.5, seed=0)
    near, far = np.array([[0.0]], np.float32), np.array([[1.0]], np.float32)
    images = FlowImages(tmp_path, contexts=[[0.0], [1.0]], samples=500, resolution=16)
    images.set_model(flow)
    images.on_train_begin()
    images.draw(0)
    images.on_train_end()
    both = np.concatenate([flow.sample(500, context=c, seed=0).numpy() for c in (near, far)])
    assert images.region == P.region_of(both, (0, 1))


def test_a_bad_seed_and_a_1d_flow_are_refused_before_training(tmp_path):
    for seed in (2 ** 31, "a", 1.5):
        with pytest.raises(ValueError, match="`seed` must be an integer"):
            FlowImages(tmp_path, seed=seed)
    # it takes integers only (the message offered the SeedGenerator it refused)
    with pytest.raises(ValueError, match=r"^`seed` must be an integer; received <"):
        FlowImages(tmp_path, seed=keras.random.SeedGenerator(1))
    images = FlowImages(tmp_path)
    images.set_model(kerasflows.Flow([kerasflows.layers.ElementwiseAffine(),
                                      kerasflows.layers.ElementwiseAffine()], event_dim=1))
    with pytest.raises(ValueError, match=r"draws flows of 2 or more dimensions .*event_dim=1"):
        images.on_train_begin()


def test_the_data_picture_is_written_once_over_several_fits(tmp_path):
    x = kerasflows.datasets.load("moons", n=256, seed=0)
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,))
    flow.compile(optimizer="adam", jit_compile=False)
    images = FlowImages(tmp_path, data=x, resolution=16, samples=100)
    for _ in range(2):
        flow.fit(x, batch_size=128, epochs=1, verbose=0, callbacks=[images])
    assert [step for step, _ in read_frames(tmp_path, "data")] == [0]


def test_dims_turn_the_density_of_a_2d_flow_like_its_samples(tmp_path):
    # FlowImages(dims=(1, 0)) drew the density untransposed, on the turned region
    x = kerasflows.datasets.load("moons", n=512, seed=0) * [1.0, 3.0] + [4.0, 0.0]
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,))
    flow.compile(optimizer="adam", jit_compile=False)
    images = FlowImages(tmp_path, data=x, resolution=24, samples=500, dims=(1, 0))
    flow.fit(x, batch_size=256, epochs=1, verbose=0, callbacks=[images])
    density = read_images(tmp_path / "flow")["density"][-1][1]
    expected, _ = P.density_picture(flow, images.region, 24, dims=(1, 0))
    np.testing.assert_array_equal(density, expected)
    assert images.region == pytest.approx(P.region_of(x, (1, 0)))
    assert not np.array_equal(density, P.density_picture(flow, images.region, 24)[0])
