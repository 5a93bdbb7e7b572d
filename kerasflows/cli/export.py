"""`kerasflows export MODEL DIR`: write a TF Serving SavedModel to DIR/<version>/."""

import os

from kerasflows.cli.common import (HelpFormatter, UserError, check_folder_can_be_made, open_flow,
                                   positive_int, read_json_file)
from kerasflows.cli.data import model_column_names, model_dequantized_columns

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    p = subparsers.add_parser("export", help="write a SavedModel for TF Serving",
                              description=__doc__.split(":", 1)[1].strip() + " Signatures: "
                              "serving_default, sample, forward, inverse, trace, trace_inverse "
                              "(a conditional flow's context: one row per input row, or one "
                              "row shared by all); assets.extra/kerasflows.json names the "
                              "data's columns when the model's training data did (and the "
                              "context's: its --context file's header, or a model folder's "
                              "manifest.json context_names), and those "
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
    replaced = os.path.realpath(target)
    if os.path.commonpath([os.path.realpath(args.model), replaced]) == replaced:
        raise UserError(f"{args.model} is inside {target}, which the export replaces; write "
                        "the SavedModel to another DIR or --version.")
    columns = _column_names(args.model, flow)
    context_columns = _context_names(args.model, flow)
    check_folder_can_be_made(args.dir, f"cannot write to DIR {args.dir}")
    import tensorflow as tf
    try:
        target = export_saved_model(
            flow, args.dir, version=args.version, overwrite=args.overwrite, columns=columns,
            dequantized_columns=model_dequantized_columns(args.model, flow.event_dim),
            context_columns=context_columns)
    except (tf.errors.OpError, OSError) as e:   # TensorFlow's file errors are no OSError
        reason = e.message if isinstance(e, tf.errors.OpError) else (e.strerror or e)
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        raise UserError(f"cannot write the SavedModel to DIR {args.dir}: {reason}{where}; "
                        "DIR is as it was.") from None
    print(f"Exported {args.model} to {target}")
    return 0


def _column_names(model, flow):
    """The data column names in `model`'s training record; a UserError when they do
    not name the flow's `event_dim` columns."""
    names = model_column_names(model)
    if names is not None and len(names) != flow.event_dim:
        raise UserError(f"{model}: its training record names {len(names)} data columns "
                        f"({', '.join(names)}); the flow has event_dim={flow.event_dim}. To "
                        "export it, call kerasflows.export.export_saved_model(flow, DIR) in "
                        "Python, with columns= naming its columns or none.")
    return names


def _context_names(model, flow):
    """The context column names of a conditional `model`: its training record's
    `context_columns`, else a model folder's `manifest.json` `context_names`; None
    when neither names `context_dim` columns."""
    if flow.context_dim is None:
        return None
    names = model_column_names(model, "context_columns")
    manifest = os.path.join(model, "manifest.json")
    if names is None and os.path.isdir(model) and os.path.isfile(manifest):
        names = read_json_file(manifest).get("context_names")
    ok = (isinstance(names, list) and len(names) == flow.context_dim
          and all(isinstance(n, str) and n.strip() for n in names))
    return names if ok else None
