"""`kerasflows plot MODEL -o FILE.png`: a picture of a flow, with no display and no GUI.

The flow's log-density on a region (2-D flows that have an inverse) beside a
histogram of its samples, or its samples as pictures for image-shaped flows
(the model folder's manifest `image`, or `--image HxW`), drawn by
`kerasflows.pictures` into one PNG file.
"""

import argparse
import json
import os

import numpy as np

from kerasflows.cli.common import (HelpFormatter, UserError, add_context_argument, open_flow,
                                   positive_int, read_context)

__all__ = ["add_parser", "run"]

#: Dark gap between the pictures of one PNG (the visualizer's background).
GAP, GAP_COLOUR = 8, (22, 24, 28)


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


def add_parser(subparsers):
    p = subparsers.add_parser("plot", help="draw a flow's density and samples to a PNG",
                              description=__doc__.split(":", 1)[1].strip(),
                              formatter_class=HelpFormatter)
    p.add_argument("model", help="a .keras file or a model folder (e.g. saved_models/moons)")
    p.add_argument("-o", "--out", required=True, metavar="FILE.png", help="the PNG file")
    p.add_argument("--what", choices=["both", "density", "samples"], default="both",
                   help="density and samples side by side, or one of them (density: 2-D "
                   "flows with an inverse; both falls back to samples for other flows)")
    p.add_argument("--region", type=_numbers(float, 4), metavar="XMIN,XMAX,YMIN,YMAX",
                   help="the region drawn (default: around the model folder's data sample, "
                   "else around the samples)")
    p.add_argument("--dims", type=_numbers(int, 2), default=[1, 2], metavar="I,J",
                   help="the two coordinates drawn, counted from 1 (x1, x2) (default: 1,2)")
    p.add_argument("--resolution", type=positive_int, default=256,
                   help="pixels per side of each picture")
    p.add_argument("-n", "--num", type=positive_int, default=20_000, help="samples drawn")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--span", type=float, default=10.0,
                   help="nats of log-density shown below the maximum")
    p.add_argument("--image", type=_numbers(int, 2), metavar="HxW",
                   help="draw samples as HxW grey pictures (default: the manifest's `image`)")
    add_context_argument(p, "one row (a conditional flow is drawn at one context)")
    return p


def _folder_file(model, name):
    path = os.path.join(model, name)
    return path if os.path.isdir(model) and os.path.isfile(path) else None


def _image_spec(args, flow):
    """`(shape, levels)` for samples drawn as pictures, or None."""
    manifest = _folder_file(args.model, "manifest.json")
    spec = {}
    if manifest:
        with open(manifest) as f:
            spec = json.load(f).get("image") or {}
    shape = args.image or spec.get("shape")
    if shape is None:
        return None
    if int(np.prod(shape)) != flow.event_dim:
        raise UserError(f"--image {shape[0]}x{shape[1]} holds {int(np.prod(shape))} values; "
                        f"the flow has event_dim={flow.event_dim}.")
    return tuple(shape), spec.get("levels")


def _side_by_side(pictures):
    height = max(p.shape[0] for p in pictures)
    parts = []
    for p in pictures:
        pad = np.empty((height, p.shape[1], 3), np.uint8)
        pad[:] = GAP_COLOUR
        pad[:p.shape[0]] = p
        parts += [pad, np.tile(np.array(GAP_COLOUR, np.uint8), (height, GAP, 1))]
    return np.concatenate(parts[:-1], axis=1)


def run(args):
    from kerasflows import pictures
    if not args.out.endswith(".png"):
        raise UserError(f"--out must end in .png. Received: {args.out}")
    flow = open_flow(args.model, unconditional=False)
    context = read_context(args.context, flow, 1, "picture")
    dims = tuple(d - 1 for d in args.dims)
    if len(set(dims)) != 2 or not all(0 <= d < flow.event_dim for d in dims):
        raise UserError(f"--dims must name two different coordinates in 1..{flow.event_dim}; "
                        f"received {args.dims[0]},{args.dims[1]}.")
    can_density = flow.event_dim == 2 and not any(l.forward_only for l in flow.flow_layers)
    if args.what == "density" and not can_density:
        raise UserError(f"--what density draws 2-D flows that have an inverse; this flow has "
                        f"event_dim={flow.event_dim}"
                        + ("" if flow.event_dim != 2 else " and a forward-only layer") + ".")
    samples = flow.sample(args.num, context=context, seed=args.seed).numpy()
    image = _image_spec(args, flow)
    shown, said = [], []
    if image is not None:
        shown.append(pictures.image_grid(samples[:64], image[0], image[1],
                                         scale=max(1, args.resolution // (8 * max(image[0])))))
        said.append(f"{min(64, len(samples))} samples as {image[0][0]}x{image[0][1]} pictures")
    else:
        data = _folder_file(args.model, "data_sample.npy")
        region = args.region or pictures.region_of(np.load(data) if data else samples, dims)
        region = tuple(float(v) for v in region)
        if args.what != "samples" and can_density:
            picture, (low, high) = pictures.density_picture(
                flow, region, args.resolution, context=context, span=args.span)
            shown.append(picture)
            said.append(f"log p(x) from {low:.2f} (dark) to {high:.2f} (bright) nats")
        if args.what != "density":
            shown.append(pictures.samples_picture(samples, region, args.resolution, dims))
            said.append(f"a histogram of {len(samples)} samples")
        said[-1] += (" on x{} in [{:.3g}, {:.3g}], x{} in [{:.3g}, {:.3g}]".format(
            dims[0] + 1, *region[:2], dims[1] + 1, *region[2:]))
    picture = _side_by_side(shown)
    with open(args.out, "wb") as f:
        f.write(pictures.encode_png(picture))
    print(f"Wrote {args.out} ({picture.shape[1]}x{picture.shape[0]}): {'; '.join(said)}.")
    return 0
