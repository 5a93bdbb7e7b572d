"""`kerasflows plot MODEL -o FILE.png`: a picture of a flow, with no display and no GUI.

The flow's log-density on a region (2-D flows that have an inverse) beside a
histogram of its samples, or its samples as pictures for image-shaped flows
(the model folder's manifest `image`, or `--image HxW`), or (`--what pairs`)
every pair of up to six coordinates, the samples below the diagonal and the
model folder's data sample above it, with each coordinate's marginals on the
diagonal (a corner plot: a wider flow's columns one by one), drawn by
`kerasflows.pictures` into one PNG file. A conditional flow is drawn at
`--context` (default: the manifest's `context`); with `--rows-by-context`,
an image-shaped one is drawn one row of pictures per value of its stepped
context (a class label), and needs no `--context` when its context is that
one number.
"""

import argparse
import math
import os

import numpy as np

from kerasflows import pictures
from kerasflows.callbacks import ROW     # samples per context value, as FlowImages draws them
from kerasflows.cli.common import (HelpFormatter, UserError, add_context_argument,
                                   add_seed_argument, check_output_file, open_flow,
                                   plural, positive_float, positive_int, read_json_file,
                                   write_output, written_or_kept)
from kerasflows.cli.data import (FLOAT32_MAX, check_columns, label_embedding, model_column_names,
                                 read_array, read_context)

__all__ = ["add_parser", "run"]

#: Pixels between the pictures of one PNG.
GAP = 8
#: Nats of log-density shown below the maximum, by default.
SPAN = 10.0


def _resolution(text):
    """argparse type of --resolution: an integer in 2..4096 (`pictures`' range)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2 or value > 4096:
        raise argparse.ArgumentTypeError(f"expected an integer in 2..4096, got {text!r}")
    return value


def _numbers(kind, count):
    def parse(text):
        try:
            values = [kind(v) for v in text.replace("x", ",").split(",")]
        except ValueError:
            values = []
        if len(values) != count:
            raise argparse.ArgumentTypeError(
                f"expected {count} comma-separated numbers, got {text!r}")
        return values
    return parse


def _image_shape(text):
    """`--image HxW`: two whole numbers >= 1 (-1x-2 passed as 2 values)."""
    try:
        values = [int(v) for v in text.replace(",", "x").split("x")]
    except ValueError:
        values = []
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW, two whole numbers >= 1 such as 8x8; "
                                         f"got {text!r}")
    return values


def _coordinates(text):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected coordinates counted from 1 separated by "
                                         f"commas, such as 1,2; got {text!r}") from None
    return values


def add_parser(subparsers):
    p = subparsers.add_parser("plot", help="draw a flow's density and samples to a PNG",
                              description=__doc__.split(":", 1)[1].strip(),
                              formatter_class=HelpFormatter)
    p.add_argument("model", help="a .keras file or a model folder (e.g. saved_models/moons)")
    p.add_argument("-o", "--out", required=True, metavar="FILE.png",
                   help="the PNG file (its folder is made if missing)")
    p.add_argument("--what", choices=["both", "density", "samples", "pairs"], default="both",
                   help="density and samples side by side, or one of them (density: 2-D "
                   "flows with an inverse; both falls back to samples for other flows, "
                   "and to pairs' histogram for a one-column flow, without --region or "
                   "--span); "
                   "pairs: every pair of --dims, samples below the diagonal, the model "
                   "folder's data sample above it, marginal histograms on it")
    p.add_argument("--region", type=_numbers(float, 4), metavar="XMIN,XMAX,YMIN,YMAX",
                   help="the region drawn (default: around the model folder's data sample, "
                   "else around the samples)")
    p.add_argument("--dims", type=_coordinates, metavar="I,J",
                   help=f"the two coordinates drawn, counted from 1 (default: 1,2); with "
                   f"--what pairs, 1 to {pictures.MAX_PAIRS} of them (default: the first "
                   f"{pictures.MAX_PAIRS})")
    p.add_argument("--resolution", type=_resolution, default=256,
                   help="pixels per side of each picture (of each cell with --what pairs), "
                   "2 to 4096")
    p.add_argument("-n", "--num", type=positive_int, default=20_000, help="samples drawn")
    add_seed_argument(p, "sampling seed")
    p.add_argument("--span", type=positive_float,
                   help=f"nats of log-density shown below the maximum, > 0 (default: {SPAN:g})")
    p.add_argument("--image", type=_image_shape, metavar="HxW",
                   help="draw samples as HxW grey pictures (default: the manifest's `image`)")
    add_context_argument(p, "one row (a conditional flow is drawn at one context; default: "
                         "the model folder's manifest `context`)")
    p.add_argument("--rows-by-context", action="store_true",
                   help=f"for an image-shaped conditional flow whose context moves in steps "
                   f"(the manifest's context_range and context_step, or a ClassEmbedding's "
                   f"labels): {ROW} samples at each value, one row of pictures per value "
                   f"(--context, or the manifest's, then gives the other coordinates of a "
                   f"wider context; a one-number context needs none)")
    return p


def _manifest(args):
    path = _folder_file(args.model, "manifest.json")
    return read_json_file(path) if path else {}


def _number(value):
    """Whether `value` (read from JSON) is a finite number."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _manifest_field(args, manifest, field, ok, expected):
    """The model folder's manifest `field`, or None; a UserError naming the file and
    the field when it is there but not `ok(value)` (hand-edited: a raw TypeError
    traceback, or "could not convert string to float")."""
    value = manifest.get(field)
    if value is not None and not ok(value):
        raise UserError(f"{_folder_file(args.model, 'manifest.json')}: {field} is {value!r}; "
                        f"expected {expected}.")
    return value


def _stepped_values(args, flow, manifest):
    """`(k, values)`: the context coordinate that moves in steps and its values, to
    its last step inside the range (0 to 23 in steps of 2: 22, as the visualizer's
    `geometry.stepped_values`)."""
    count = flow.context_dim
    per_coordinate = lambda ok: lambda v: isinstance(v, list) and len(v) == count and all(
        ok(x) for x in v)
    steps = _manifest_field(args, manifest, "context_step", per_coordinate(
        lambda s: s is None or (_number(s) and s > 0)),
        f"a list of {plural(count, 'step')} > 0 (or null for a coordinate that takes any "
        "value)")
    ranges = _manifest_field(args, manifest, "context_range", per_coordinate(
        lambda r: isinstance(r, list) and len(r) == 2 and all(map(_number, r)) and r[0] < r[1]),
        f"a list of {plural(count, '[low, high] pair')} of numbers, low < high")
    for k, step in enumerate(steps or []):
        if step and ranges:
            low, high = ranges[k]
            last = int(round((high - low) / step))
            while last > 0 and low + last * step > high + 1e-6 * step:
                last -= 1
            return k, low + step * np.arange(last + 1)
    embedding = label_embedding(flow)
    if embedding is not None:
        return 0, np.arange(embedding.num_classes, dtype=np.float64)
    raise UserError("--rows-by-context needs a context that moves in steps: the model "
                    "folder's manifest context_step, or a ClassEmbedding context encoder.")


def _rows_by_context(args, flow, context, manifest):
    """`ROW` samples at each value of the stepped context coordinate, row by row."""
    k, values = _stepped_values(args, flow, manifest)
    if context is None and flow.context_dim > 1:
        raise UserError(f"--rows-by-context steps one coordinate of this flow's context "
                        f"(context_dim={flow.context_dim}); give --context for the others.")
    base = (np.zeros(flow.context_dim, np.float32) if context is None
            else np.asarray(context, np.float32)[0])
    rows = []
    for v in values:
        c = base.copy()
        c[k] = v
        rows.append(flow.sample(ROW, context=c[None], seed=args.seed).numpy())
    return np.concatenate(rows), len(values)


def _context(args, flow, manifest):
    """The context `[1, C]` the flow is drawn at: `--context`, else the manifest's;
    None for an unconditional flow, and for `--rows-by-context`, which steps the
    context, when neither is given."""
    opening = None
    if flow.context_dim is not None and args.context is None:    # (else not used)
        opening = _manifest_field(
            args, manifest, "context", lambda c: isinstance(c, list) and len(c) == flow.context_dim
            and all(map(_number, c)),
            f"a list of {plural(flow.context_dim, 'number')} (the flow's context_dim), the "
            "context it opens at")
    if args.context is None and flow.context_dim is not None:
        if opening is not None:
            return np.asarray(opening, np.float32).reshape(1, -1)
        if args.rows_by_context:
            return None
    return read_context(args.context, flow, 1, "picture", args.model)


def _check_region(region):
    """Refuses a `--region` that is not finite with xmin < xmax and ymin < ymax, or
    beyond float32's range (the flow's points are float32: a region of 1e40 was
    drawn as inf, and a density range made up for it)."""
    if region is None:
        return
    xmin, xmax, ymin, ymax = region
    if not (np.all(np.isfinite(region)) and xmin < xmax and ymin < ymax):
        raise UserError(f"--region: expected finite XMIN,XMAX,YMIN,YMAX with XMIN < XMAX and "
                        f"YMIN < YMAX; received {','.join(f'{v:g}' for v in region)}.")
    if np.abs(region).max() > FLOAT32_MAX:
        raise UserError(f"--region: expected numbers within float32's range (magnitude up to "
                        f"{FLOAT32_MAX:.4g}); received {','.join(f'{v:g}' for v in region)}.")


def _data_sample(args, flow):
    """The model folder's `data_sample.npy` `[N, D]`, checked; None if it has none."""
    path = _folder_file(args.model, "data_sample.npy")
    if path is None:
        return None
    data = read_array(path)
    check_columns(data, flow, path)
    return data


def _folder_file(model, name):
    path = os.path.join(model, name)
    return path if os.path.isdir(model) and os.path.isfile(path) else None


def _image_spec(args, flow, manifest):
    """`(shape, levels)` for samples drawn as pictures, or None."""
    spec = manifest.get("image") or {}
    shape = args.image or spec.get("shape")
    if shape is None:
        return None
    if int(np.prod(shape)) != flow.event_dim:
        raise UserError(f"--image {shape[0]}x{shape[1]} holds {int(np.prod(shape))} values; "
                        f"the flow has event_dim={flow.event_dim}.")
    return tuple(shape), spec.get("levels")


def _scale(args, image):
    """Screen pixels per image pixel: an 8x8 grid of pictures about `--resolution` wide."""
    return max(1, args.resolution // (8 * max(image[0])))


def _draw_rows(args, flow, context, image, manifest):
    if image is None or flow.context_dim is None:
        raise UserError("--rows-by-context draws image-shaped conditional flows (a "
                        "manifest image, or --image HxW).")
    samples, count = _rows_by_context(args, flow, context, manifest)
    return ([pictures.image_grid(samples, image[0], image[1], columns=ROW,
                                 scale=_scale(args, image))],
            [f"{ROW} samples at each of {count} context values, one row each"])


def _draw_points(args, flow, context, dims, can_density):
    """The density (2-D flows with an inverse) and a histogram of samples."""
    samples = flow.sample(args.num, context=context, seed=args.seed).numpy()
    if args.region is None:
        data = _data_sample(args, flow)
        region = pictures.region_of(samples if data is None else data, dims)
    else:
        region = args.region
    region = tuple(float(v) for v in region)
    shown, said = [], []
    if args.what != "samples" and can_density:
        picture, (low, high) = pictures.density_picture(
            flow, region, args.resolution, context=context,
            span=SPAN if args.span is None else args.span, dims=dims)
        shown.append(picture)
        said.append(pictures.range_text(low, high))
    if args.what != "density":
        shown.append(pictures.samples_picture(samples, region, args.resolution, dims))
        said.append(f"a histogram of {len(samples)} samples")
    said[-1] += " " + pictures.region_text(region, dims, model_column_names(args.model))
    return shown, said


def _dims(args, flow):
    """The coordinates drawn (from 0): two, or for pairs 1 to `MAX_PAIRS`."""
    D = flow.event_dim
    if D == 1 and args.what != "pairs":
        raise UserError(f"this flow has one column (event_dim=1), and --what {args.what} draws "
                        "two of a flow's coordinates; --what pairs draws the column's samples "
                        "as a histogram.")
    if args.what == "pairs":
        if args.region is not None or args.rows_by_context or args.span is not None:
            raise UserError("--what pairs takes each coordinate's range from the data and "
                            "draws no density; --region, --span and --rows-by-context apply "
                            "to the other pictures.")
        given = args.dims or list(range(1, min(D, pictures.MAX_PAIRS) + 1))
        count = f"1 to {pictures.MAX_PAIRS} different coordinates"
    else:
        given = args.dims or [1, 2]
        count = "two different coordinates"
    dims = [d - 1 for d in given]
    if not (pictures.valid_pairs(dims, D) and (args.what == "pairs" or len(dims) == 2)):
        raise UserError(f"--dims must name {count} in 1..{D}; received "
                        f"{','.join(map(str, given))}.")
    return tuple(dims)


def _check_no_region(args, image):
    """Image flows are drawn as pictures: the options of the region picture don't apply."""
    given = [name for name, value in (("--region", args.region), ("--dims", args.dims),
                                      ("--span", args.span)) if value is not None]
    if given:
        raise UserError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to "
                        f"the region pictures of two coordinates; this flow is drawn as "
                        f"{image[0][0]}x{image[0][1]} pictures (--what pairs draws its "
                        f"coordinates two by two).")


def _draw_pairs(args, flow, context, dims):
    """Every pair of `dims`: samples below the diagonal, the data sample above it."""
    samples = flow.sample(args.num, context=context, seed=args.seed).numpy()
    data = _data_sample(args, flow)
    picture, ranges = pictures.pairs_picture(samples, data, dims, cell=args.resolution)
    names = model_column_names(args.model) or [f"x{d + 1}" for d in range(flow.event_dim)]
    if len(dims) == 1:          # a one-column flow: the diagonal's one cell
        (lo, hi), = ranges
        return [picture], [f"a histogram of {len(samples)} samples of {names[dims[0]]} "
                           "(filled orange" + ("" if data is None else
                                               f"; {len(data)} points of the data sample, "
                                               "a grey line") + f") on [{lo:.3g}, {hi:.3g}]"]
    what = f"every pair of {', '.join(names[d] for d in dims)}: {len(samples)} samples below " \
           "the diagonal"
    what += ("" if data is None else f", {len(data)} points of the data sample above it") + \
        " (2-D histograms), each coordinate's marginals on the diagonal (samples filled " \
        "orange" + ("" if data is None else ", data a grey line") + ") on " + \
        ", ".join(f"{names[d]} in [{lo:.3g}, {hi:.3g}]" for d, (lo, hi) in zip(dims, ranges))
    return [picture], [what]


def run(args):
    if not args.out.endswith(".png"):
        raise UserError(f"--out must end in .png. Received: {args.out}")
    check_output_file("--out", args.out, [("MODEL", args.model)])
    flow = open_flow(args.model)
    manifest = _manifest(args)
    context = _context(args, flow, manifest)
    _check_region(args.region)
    if (flow.event_dim == 1 and args.what == "both" and args.region is None
            and args.span is None and not args.rows_by_context):
        args.what = "pairs"     # both's fallback for one column: its samples' histogram
    dims = _dims(args, flow)
    can_density = pictures.draws_density(flow)
    if args.what == "density" and not can_density:
        raise UserError(f"--what density draws 2-D flows that have an inverse; this flow has "
                        f"event_dim={flow.event_dim}"
                        + ("" if flow.event_dim != 2 else " and a forward-only layer") + ".")
    image = _image_spec(args, flow, manifest)
    if image is not None and args.what != "pairs":
        _check_no_region(args, image)
    elif args.span is not None and args.what in ("samples", "both") and not (
            args.what == "both" and can_density):
        raise UserError("--span sets the density picture's range; "
                        + ("--what samples draws none." if args.what == "samples" else
                           f"this flow has none (a density is drawn for 2-D flows that have "
                           f"an inverse; it has event_dim={flow.event_dim}"
                           + ("" if flow.event_dim != 2 else " and a forward-only layer")
                           + ")."))
    if args.what == "pairs":
        shown, said = _draw_pairs(args, flow, context, dims)
    elif args.rows_by_context:
        shown, said = _draw_rows(args, flow, context, image, manifest)
    elif image is not None:
        samples = flow.sample(min(args.num, pictures.IMAGES_SHOWN), context=context,
                              seed=args.seed).numpy()
        shown = [pictures.image_grid(samples, image[0], image[1], scale=_scale(args, image))]
        said = [f"{len(samples)} samples as {image[0][0]}x{image[0][1]} pictures"]
    else:
        shown, said = _draw_points(args, flow, context, dims, can_density)
    picture = pictures.side_by_side(shown, gap=GAP)
    png = pictures.encode_png(picture)
    with written_or_kept("--out", args.out):
        write_output(args.out, lambda f: f.write(png))
    print(f"Wrote {args.out} ({picture.shape[1]}x{picture.shape[0]}): {'; '.join(said)}.")
    return 0
