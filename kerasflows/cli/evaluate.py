"""`kerasflows evaluate MODEL DATA`: the mean negative log-likelihood of data under a flow."""

import json

from kerasflows.cli.common import (HelpFormatter, UserError, add_context_argument, check_columns,
                                   open_flow, positive_int, read_conditional_set, read_context,
                                   read_data)

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    p = subparsers.add_parser("evaluate", help="NLL of a dataset or data file under a model",
                              description=__doc__.split(":", 1)[1].strip(),
                              formatter_class=HelpFormatter)
    p.add_argument("model", help="a .keras file or a model folder (e.g. saved_models/moons)")
    p.add_argument("data", help="a dataset name (draws --n points; the conditional sets "
                   "ring_radius and digits_label with their contexts) or a .npy/.csv file [N, D]")
    p.add_argument("--n", type=positive_int, default=None,
                   help="points to draw for a dataset name (default 10000; digits: 1797)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw for a dataset name")
    add_context_argument(p, "one row per data row")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def run(args):
    from kerasflows.distributed import evaluate_nll
    flow = open_flow(args.model, unconditional=False)
    drawn = read_conditional_set(args.data, n=args.n, seed=args.seed, context=args.context)
    if drawn is not None:
        x, context = drawn
        check_columns(x, flow, args.data)
        if flow.context_dim != context.shape[1]:
            wants = ("is not conditional" if flow.context_dim is None else
                     f"expects context_dim={flow.context_dim}")
            raise UserError(f"{args.data} is a conditional set (contexts of "
                            f"{context.shape[1]} values); {args.model} {wants}.")
    else:
        x, _ = read_data(args.data, n=args.n, seed=args.seed)
        check_columns(x, flow, args.data)
        context = read_context(args.context, flow, len(x), f"row of {args.data}")
    mean, se = evaluate_nll(flow, x, context=context)
    result = {"model": args.model, "data": args.data, "n": len(x), "nll": mean, "nll_se": se}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"NLL of {args.data} under {args.model}: {mean:.4f} nats per example "
              f"(s.e. {se:.4f}, n={len(x)})")
    return 0
