"""`FlowImages`: a Keras callback that draws the flow into TensorBoard while it trains.

Keras' own `keras.callbacks.TensorBoard` logs the loss; this callback adds
what the flow has learned, as pictures (`kerasflows.pictures`) under the run
`flow` of the same `log_dir`, one per drawn epoch on TensorBoard's step
slider (step = the epoch's index, as Keras' epoch scalars):

- `density`: `log p(x)` on a fixed region (2-D flows with an inverse);
- `samples`: a histogram of samples drawn from the same base noise every
  time (a fixed seed), so frames differ only by training (two chosen
  dimensions of wider flows; for image-shaped flows, `image_shape`, 64
  samples as pictures; with `contexts`, the flow at each of several
  contexts: one row of pictures, or one picture, per context);
- `pairs`: for flows with D > 2 drawn as points, every pair of up to six
  coordinates, the samples below the diagonal and the data above it, with
  each coordinate's marginals on the diagonal (`pictures.pairs_picture`, on
  ranges fixed at the first frame): the columns of a table, one by one;
- `data`: once, the given data drawn the same way, for comparison;
- `density_range` (text): each density frame's colour range in nats.

Example:

```python
log_dir = "runs/moons"
flow.fit(x, epochs=30, callbacks=[keras.callbacks.TensorBoard(log_dir),
                                  kerasflows.callbacks.FlowImages(log_dir, data=x)])
# tensorboard --logdir runs
```
"""

import os

import keras
import numpy as np

from kerasflows import pictures
from kerasflows.flow_sampling import _int32_seed
from kerasflows.layers.base import check_positive_int

__all__ = ["FlowImages", "ROW", "read_frames"]

#: Samples per context when `FlowImages` draws one row per context.
ROW = 10


class FlowImages(keras.callbacks.Callback):
    """Writes pictures of the flow to TensorBoard after every `every` epochs.

    Args:
        log_dir: the TensorBoard log directory (the pictures go to its run
            `flow`; give `keras.callbacks.TensorBoard` the same directory).
        data: optional `[n, D]` array (e.g. the training data or a sample of
            it): it sets the region and the pictures' grey levels, and is
            drawn once as `data`.
        region: `(xmin, xmax, ymin, ymax)` of the two drawn dimensions;
            default: around `data`, else around the first epoch's samples
            (then kept, so that frames compare).
        every: epochs between pictures (the last epoch is always drawn).
        resolution: pixels per side of the density and histogram pictures.
        samples: samples per picture (an image-shaped flow draws at most 64,
            the pictures shown).
        seed: the samples' seed: the same base noise in every frame.
        context: for a conditional flow, the one context `[C]` it is drawn at.
        contexts: for a conditional flow, `[K, C]` contexts to draw it at
            instead, from the same base noise: an image-shaped flow as `ROW`
            samples per context, one row of pictures each (a class-
            conditional flow's labels, say); other flows as one density and
            one histogram per context, left to right (a ring at three radii).
        dims: the two dimensions drawn when D > 2.
        image_shape: `(h, w)` with `h * w = D`: draw samples as pictures
            (64 of them) instead of a histogram.
        image_levels: `(black, white)` for those pictures; default: the
            range of `data`, else of each frame's samples.
        span: nats of log-density shown below the maximum (a finite number > 0).
        flow: the `kerasflows.Flow` to draw, if the model being trained is
            not the flow itself (a larger model holding one).
        pairs: the coordinates of the `pairs` picture (at most
            `pictures.MAX_PAIRS`); default: the first six of a flow with
            D > 2 that is not drawn as pictures; `()`: no `pairs` picture.

    Raises:
        ValueError: for bad arguments; at the start of training, when the
            model is not a flow and no `flow` was given, or a conditional
            flow has no `context`.
    """

    def __init__(self, log_dir, data=None, region=None, every=1, resolution=128,
                 samples=20_000, seed=0, context=None, dims=(0, 1), image_shape=None,
                 image_levels=None, span=10.0, flow=None, contexts=None, pairs=None):
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        if isinstance(data, (tuple, list)) and len(data) == 2 and all(
                np.ndim(part) == 2 for part in data):
            # fit's (x, context): NumPy's own error was of an inhomogeneous shape
            raise ValueError("`data` takes the x array only, [n, D]; received a pair of "
                             f"arrays (shapes {np.shape(data[0])} and {np.shape(data[1])}), as "
                             "fit's (x, context). A conditional flow is drawn at `context=` "
                             "(or `contexts=`).")
        self.data = None if data is None else np.asarray(data, np.float32)
        if self.data is not None and self.data.ndim != 2:
            raise ValueError(f"`data` must have shape [n, D]; received {self.data.shape}.")
        self.region = None if region is None else pictures._check_region(region)
        self.every = check_positive_int("every", every)
        self.resolution = pictures._check_resolution(resolution)
        self.samples = check_positive_int("samples", samples)
        self.seed = _int32_seed(seed, generators=False)     # for `Flow.sample` (at epochs)
        self.context = None if context is None else np.asarray(context, np.float32).reshape(1, -1)
        self.contexts = None if contexts is None else np.asarray(contexts, np.float32)
        if self.contexts is not None and (self.contexts.ndim != 2 or not len(self.contexts)):
            # (no rows: refused only after the first epoch, "need at least one array")
            raise ValueError(f"`contexts` must have shape [K, C] with K >= 1; received "
                             f"{self.contexts.shape}.")
        self.dims = pictures.check_integers("dims", dims)
        self.image_shape = None if image_shape is None else pictures.check_image_shape(image_shape)
        self.image_levels = (None if image_levels is None   # refused now, not after an epoch
                             else pictures.check_levels(image_levels, "image_levels"))
        self.span = pictures.check_span(span)
        self.flow = flow
        self.pairs = None if pairs is None else pictures.check_integers("pairs", pairs)
        self._pairs = self._pairs_ranges = None
        self._writer = None
        self._drawn = self._last_epoch = None
        self._data_written = False

    # -- Keras hooks ----------------------------------------------------------
    def on_train_begin(self, logs=None):
        from kerasflows.flow import Flow
        flow = self.flow if self.flow is not None else self.model
        if not isinstance(flow, Flow):
            raise ValueError(f"FlowImages draws a kerasflows.Flow; the model is "
                             f"{type(flow).__name__}: pass the flow it holds as flow=...")
        self._check(flow)
        self._flow = flow
        import tensorflow as tf
        self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "flow"))
        self._drawn = self._last_epoch = self._pairs_ranges = None
        if self.data is not None and not self._data_written:    # once, for every fit
            self._write({"data": self._points_picture(self.data)}, step=0)
            self._data_written = True

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            self.draw(epoch)

    def on_train_end(self, logs=None):
        last = self._last_epoch
        if last is not None and self._drawn != last:
            self.draw(last)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def on_epoch_begin(self, epoch, logs=None):
        self._last_epoch = epoch

    # -- drawing ------------------------------------------------------------------
    def draw(self, epoch):
        """Writes the pictures of the flow as it is now, at step `epoch`."""
        flow = self._flow
        contexts = [self.context] if self.contexts is None else self.contexts[:, None]
        if self.contexts is not None and self.image_shape is not None:   # a row a context
            x = np.concatenate([flow.sample(ROW, context=c[None], seed=self.seed).numpy()
                                for c in self.contexts])
            shown = {"samples": self._points_picture(x, columns=ROW)}
            points = x
        else:                                   # a picture a context (or the one context)
            n = self._samples_drawn()
            drawn = [np.asarray(flow.sample(n, context=c, seed=self.seed)) for c in contexts]
            points = np.concatenate(drawn)
            if self.image_shape is None:
                self._set_region(points)        # around every context's samples
            shown = {"samples": pictures.side_by_side([self._points_picture(x)
                                                       for x in drawn])}
            if self._pairs:
                shown["pairs"] = self._pairs_picture(drawn[0])
        notes = {}
        if pictures.draws_density(flow):
            self._set_region(points)    # (a 2-D flow drawn as pictures had none: crashed)
            drawn = [pictures.density_picture(flow, self.region, self.resolution, context=c,
                                              span=self.span, dims=self.dims)
                     for c in contexts]
            shown["density"] = pictures.side_by_side([picture for picture, _ in drawn])
            notes["density_range"] = f"after epoch {epoch + 1}: " + "; ".join(
                ("" if self.contexts is None else f"c = {np.round(c[0], 3).tolist()}: ")
                + pictures.range_text(low, high)
                for c, (_, (low, high)) in zip(contexts, drawn))
        self._write(shown, step=epoch, notes=notes)
        self._drawn = epoch

    def _check(self, flow):
        D = flow.event_dim
        if self.data is not None and self.data.shape[1] != D:
            raise ValueError(f"`data` has {self.data.shape[1]} columns; the flow has "
                             f"event_dim={D}.")
        if flow.context_dim is None and self.context is not None:
            raise ValueError(f"The flow is not conditional, so it takes no context; "
                             f"received context={self.context[0]}.")
        if flow.context_dim is not None and self.contexts is None and (
                self.context is None or self.context.shape[1] != flow.context_dim):
            raise ValueError(f"The flow is conditional (context_dim={flow.context_dim}): give "
                             f"FlowImages one context of {flow.context_dim} values (or "
                             f"contexts=); received "
                             f"context={None if self.context is None else self.context[0]}.")
        if self.image_shape is not None and int(np.prod(self.image_shape)) != D:
            raise ValueError(f"image_shape={self.image_shape} holds "
                             f"{int(np.prod(self.image_shape))} values; the flow has "
                             f"event_dim={D}.")
        if self.contexts is not None and (flow.context_dim is None
                                          or self.contexts.shape[1] != flow.context_dim):
            raise ValueError(f"`contexts` draws a conditional flow at contexts of "
                             f"{flow.context_dim} values each; received contexts of shape "
                             f"{self.contexts.shape}.")
        if self.image_shape is None and D < 2:
            raise ValueError(f"FlowImages draws flows of 2 or more dimensions (or images, "
                             f"image_shape=); this flow has event_dim={D}.")
        if self.image_shape is None and (not all(0 <= d < D for d in self.dims)
                                         or len(set(self.dims)) != 2):
            raise ValueError(f"dims must be two different dimensions of the {D}-D flow; "
                             f"received dims={self.dims}.")
        pairs = self.pairs
        if pairs is None:
            pairs = tuple(range(min(D, pictures.MAX_PAIRS))) if (
                D > 2 and self.image_shape is None) else ()
        if pairs and not pictures.valid_pairs(pairs, D):
            raise ValueError(f"pairs must be 1 to {pictures.MAX_PAIRS} different dimensions "
                             f"of the {D}-D flow; received pairs={self.pairs}.")
        self._pairs = pairs

    def _pairs_picture(self, samples):
        """`pairs_picture` of `samples` and the data, on the first frame's ranges."""
        if self._pairs_ranges is None:
            try:
                self._pairs_ranges = pictures.pairs_ranges(
                    samples if self.data is None else self.data, self._pairs)
            except ValueError:      # no finite samples yet: the base's usual range
                self._pairs_ranges = [(-4.0, 4.0)] * len(self._pairs)
        picture, _ = pictures.pairs_picture(samples, self.data, self._pairs, self.resolution,
                                            self._pairs_ranges)
        return picture

    def _points_picture(self, points, columns=None):
        if self.image_shape is not None:
            levels = self.image_levels
            finite = None if self.data is None else self.data[np.isfinite(self.data)]
            if levels is None and finite is not None and finite.size:  # NaN rows aside
                levels = (float(finite.min()), float(finite.max()))
            shown = points if columns else points[:pictures.IMAGES_SHOWN]
            return pictures.image_grid(shown, self.image_shape, levels, columns=columns,
                                       scale=max(1, 96 // max(self.image_shape)))
        self._set_region(points)
        return pictures.samples_picture(points, self.region, self.resolution, self.dims)

    def _set_region(self, points):
        """The region, if none is set yet: around `points` (then kept, so frames compare)."""
        if self.region is None:
            finite = np.isfinite(points[:, list(self.dims)]).all(1)
            # no finite samples (a flow diverged before the region was set): the base's
            # usual range, so training goes on and later frames compare with this one
            self.region = (pictures.region_of(points, self.dims) if finite.any()
                           else (-4.0, 4.0, -4.0, 4.0))

    def _samples_drawn(self):
        """Samples drawn a picture: `samples`, or for an image-shaped flow the
        pictures shown (at most `pictures.IMAGES_SHOWN`)."""
        return (self.samples if self.image_shape is None
                else min(self.samples, pictures.IMAGES_SHOWN))

    def _describe(self, name):
        """The tag's description (TensorBoard keeps the first one it sees)."""
        what, detail = {
            "data": (f"the data ({len(self.data) if self.data is not None else 0} points)", ""),
            "samples": (f"{self.samples} samples",
                        f" (seed {self.seed}: the same base noise in every frame)"),
            "density": ("log p(x)", f": from {self.span:g} nats below the frame's maximum "
                        f"(dark) to the maximum (bright); each frame's values are in the "
                        f"text density_range"),
            "pairs": (f"{self._samples_drawn()} samples", "")}[name]
        if name == "pairs":
            coords = ", ".join(f"x{d + 1}" for d in self._pairs)
            data = "" if self.data is None else ", the data above it"
            at = "" if self.contexts is None else f" at the context {self.contexts[0].tolist()}"
            return (f"every pair of {coords}: {what}{at} below the diagonal{data} (2-D "
                    f"histograms), each coordinate's marginals on the diagonal (samples "
                    f"filled" + ("" if self.data is None else ", data a line") + "), on "
                    + ", ".join(f"x{d + 1} in [{lo:.3g}, {hi:.3g}]"
                                for d, (lo, hi) in zip(self._pairs, self._pairs_ranges)))
        if self.contexts is not None and self.image_shape is None and name != "data":
            at = ", ".join(str(np.round(c, 3).tolist()) for c in self.contexts)
            return (f"{what} {pictures.region_text(self.region, self.dims)}{detail}, left to "
                    f"right at the contexts {at}")
        if self.image_shape is not None and name == "samples" and self.contexts is not None:
            return (f"{ROW} samples at each of {len(self.contexts)} contexts, one row each "
                    f"(seed {self.seed}: the same base noise in every row and frame), as "
                    f"{self.image_shape} pictures")
        if self.image_shape is not None:
            n = min(len(self.data) if name == "data" else self.samples, pictures.IMAGES_SHOWN)
            if name == "samples":           # only the pictures shown are drawn
                return f"{self._samples_drawn()} samples{detail}, as {self.image_shape} pictures"
            return f"{what}{detail}, {n} shown as {self.image_shape} pictures"
        return f"{what} {pictures.region_text(self.region, self.dims)}{detail}"

    def _write(self, shown, step, notes=()):
        import tensorflow as tf
        with self._writer.as_default():
            for name, picture in shown.items():
                tf.summary.image(name, picture[None], step=step,
                                 description=self._describe(name))
            for name, text in dict(notes).items():
                tf.summary.text(name, text, step=step)
        self._writer.flush()


def read_frames(log_dir, tag="density"):
    """The pictures `FlowImages` wrote under `tag` (`density`, `samples`, `pairs`, `data`) in
    `log_dir`: `[(step, uint8 [H, W, 3]), ...]` by step, for your own figures.

    Raises:
        ValueError: no `FlowImages` pictures of that tag in `log_dir`.
    """
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run = os.path.join(os.fspath(log_dir), "flow")
    if not os.path.isdir(run):
        raise ValueError(f"{run}: no such folder; FlowImages writes its pictures to "
                         "LOG_DIR/flow.")
    events = EventAccumulator(run, size_guidance={"tensors": 0})
    events.Reload()
    # pictures only: FlowImages also writes text ("density_range"), no PNG to decode
    images = sorted(t for t in events.Tags()["tensors"]
                    if events.SummaryMetadata(t).plugin_data.plugin_name == "images")
    if tag not in images:
        raise ValueError(f"{run}: no FlowImages pictures named {tag!r}; found "
                         f"{images or 'none'}.")
    frames = [(e.step, tf.io.decode_png(e.tensor_proto.string_val[2]).numpy())
              for e in events.Tensors(tag)]
    return sorted(frames, key=lambda f: f[0])
