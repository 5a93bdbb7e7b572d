"""`kerasflows sample MODEL`: draw samples from a flow into a .npy or .csv file."""

from kerasflows.cli.common import (HelpFormatter, UserError, add_context_argument,
                                   add_seed_argument, check_output_file, open_flow,
                                   positive_float, positive_int, write_array, written_or_kept)
from kerasflows.cli.data import (column_list, model_column_names, model_dequantized_columns,
                                 read_context)

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    p = subparsers.add_parser("sample", help="draw samples to a .npy or .csv file",
                              description=__doc__.split(":", 1)[1].strip() + " The same "
                              "--seed gives the same samples.",
                              formatter_class=HelpFormatter)
    p.add_argument("model", help="a .keras file or a model folder (e.g. saved_models/moons)")
    p.add_argument("-n", "--num", type=positive_int, default=1000, help="number of samples")
    add_seed_argument(p, "sampling seed")
    p.add_argument("--temperature", type=positive_float, default=1.0,
                   help="scale of the base distribution (< 1 concentrates the samples)")
    add_context_argument(p, "one row per sample")
    p.add_argument("--continuous", action="store_true",
                   help="for a model trained with --dequantize: keep the flow's continuous "
                   "values (default: those columns rounded down to whole numbers, as the "
                   "data had)")
    p.add_argument("-o", "--out", required=True, metavar="FILE",
                   help="output file, .npy or .csv (one sample per row; its folder is made "
                   "if missing; a .csv file's header line names the columns the model was "
                   "trained on, when its training data had names)")
    return p


def run(args):
    if not args.out.endswith((".npy", ".csv")):
        raise UserError(f"--out must end in .npy or .csv. Received: {args.out}")
    check_output_file("--out", args.out, [("MODEL", args.model), ("--context", args.context)])
    flow = open_flow(args.model)
    context = read_context(args.context, flow, args.num, "sample", args.model)
    samples = flow.sample(args.num, context=context, seed=args.seed,
                          temperature=args.temperature).numpy()
    noisy = model_dequantized_columns(args.model, flow.event_dim)
    if noisy and not args.continuous:
        from kerasflows.dequantization import floor_columns
        samples = floor_columns(samples, noisy)
    names = model_column_names(args.model)
    with written_or_kept("--out", args.out):
        write_array(args.out, samples, names)
    rounded = (f" ({column_list(noisy, names)} rounded down: the model was trained with "
               "--dequantize)" if noisy and not args.continuous else "")
    print(f"Wrote {len(samples)} samples of dimension {samples.shape[1]} to {args.out}{rounded}")
    return 0
