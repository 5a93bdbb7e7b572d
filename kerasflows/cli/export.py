"""`kerasflows export MODEL DIR`: write a TF Serving SavedModel to DIR/<version>/."""

from kerasflows.cli.common import HelpFormatter, open_flow, positive_int

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    p = subparsers.add_parser("export", help="write a SavedModel for TF Serving",
                              description=__doc__.split(":", 1)[1].strip() + " Signatures: "
                              "serving_default, sample, forward, inverse, trace, trace_inverse.",
                              formatter_class=HelpFormatter)
    p.add_argument("model", help="a .keras file or a model folder (e.g. saved_models/moons)")
    p.add_argument("dir", help="the model's base directory (TF Serving --model_base_path)")
    p.add_argument("--version", type=positive_int, default=1, help="version subdirectory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")
    return p


def run(args):
    from kerasflows.export import export_saved_model
    flow = open_flow(args.model, unconditional=False)
    target = export_saved_model(flow, args.dir, version=args.version, overwrite=args.overwrite)
    print(f"Exported {args.model} to {target}")
    return 0
