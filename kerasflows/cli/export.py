"""`kerasflows export MODEL DIR`: write a TF Serving SavedModel to DIR/<version>/."""

import os

from kerasflows.cli.common import (HelpFormatter, UserError, open_flow, positive_int,
                                   writable_folder)
from kerasflows.cli.data import model_column_names, model_dequantized_columns

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    p = subparsers.add_parser("export", help="write a SavedModel for TF Serving",
                              description=__doc__.split(":", 1)[1].strip() + " Signatures: "
                              "serving_default, sample, forward, inverse, trace, trace_inverse "
                              "(a conditional flow's context: one row per input row, or one "
                              "row shared by all); assets.extra/kerasflows.json names the "
                              "data's columns when the model's training data did, and those "
                              "trained with --dequantize. The flow needs an inverse: a flow "
                              "with forward-only layers (planar, radial) cannot be exported.",
                              formatter_class=HelpFormatter)
    p.add_argument("model", help="a .keras file or a model folder (e.g. saved_models/moons)")
    p.add_argument("dir", help="the model's base directory (TF Serving --model_base_path)")
    p.add_argument("--version", type=positive_int, default=1, help="version subdirectory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")
    return p


def run(args):
    from kerasflows.export import check_exportable, export_saved_model
    flow = open_flow(args.model)
    check_exportable(flow)           # before DIR is made: a refused flow left it empty
    if os.path.exists(args.dir) and not os.path.isdir(args.dir):
        raise UserError(f"{args.dir} is a file; DIR is the folder the SavedModel's versions "
                        "go in (TF Serving's --model_base_path).")
    target = os.path.join(args.dir, str(args.version))
    if os.path.isdir(target) and os.listdir(target) and not args.overwrite:
        raise UserError(f"{target} already exists; choose another --version, or give "
                        "--overwrite to replace it.")
    writable_folder(args.dir, "DIR")
    target = export_saved_model(
        flow, args.dir, version=args.version, overwrite=args.overwrite,
        columns=model_column_names(args.model),
        dequantized_columns=model_dequantized_columns(args.model, flow.event_dim))
    print(f"Exported {args.model} to {target}")
    return 0
