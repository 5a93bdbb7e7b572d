"""`kerasflows evaluate MODEL DATA`: the mean negative log-likelihood of data under a flow."""

import json

from kerasflows.cli.common import (HelpFormatter, UserError, add_context_argument,
                                   add_seed_argument, open_flow, positive_int)
from kerasflows.cli.data import (check_column_names, check_columns, check_labels, column_list,
                                 is_dataset_name, model_column_names,
                                 model_dequantized_columns, plural, read_conditional_set,
                                 read_context, read_data)

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    p = subparsers.add_parser("evaluate", help="NLL of a dataset or data file under a model",
                              description=__doc__.split(":", 1)[1].strip(),
                              formatter_class=HelpFormatter)
    p.add_argument("model", help="a .keras file or a model folder (e.g. saved_models/moons)")
    p.add_argument("data", help="a dataset name (draws --n points; the conditional sets "
                   "ring_radius and digits_label with their contexts) or a .npy/.csv file [N, D]")
    p.add_argument("--n", type=positive_int, default=None,
                   help="points to draw for a dataset name (default 10000; digits: 1797); "
                   "not for a data file")
    add_seed_argument(p, "seed of the draw for a dataset name (default 0), and of the "
                      "uniform noise a model trained with --dequantize adds to DATA (default "
                      "0); for a data file, only the latter", default=None)
    add_context_argument(p, "one row per data row")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def _inputs(args, flow, names=None, noisy=None):
    """`(x, context or None)`: DATA's rows and their contexts, checked against `flow`
    (a file's header against the model's column `names`; `noisy`, the model's
    dequantized columns, lets `--seed` seed their noise for a file)."""
    drawn = read_conditional_set(args.data, n=args.n, seed=args.seed or 0, context=args.context)
    if drawn is not None:
        x, context = drawn
        check_columns(x, flow, args.data)
        if flow.context_dim != context.shape[1]:
            wants = ("is not conditional" if flow.context_dim is None else
                     f"expects context_dim={flow.context_dim}")
            raise UserError(f"{args.data} is a conditional set (contexts of "
                            f"{plural(context.shape[1], 'value')}); {args.model} {wants}.")
        check_labels(flow, context, f"{args.data}'s context")
        return x, context
    if args.seed is not None and not is_dataset_name(args.data) and not noisy:
        raise UserError(f"--seed seeds the draw of a dataset name; {args.data} is a file (all "
                        f"its rows are used), and {args.model} was not trained with "
                        "--dequantize (whose noise it would seed).")
    x, _ = read_data(args.data, n=args.n, seed=args.seed)
    check_columns(x, flow, args.data)
    check_column_names(args.data, names,
                       f"{args.model} was trained on")
    return x, read_context(args.context, flow, len(x), f"row of {args.data}")


def run(args):
    from kerasflows.distributed import evaluate_nll
    from kerasflows.export import forward_only_summary
    flow = open_flow(args.model)
    forward_only = forward_only_summary(flow)
    if forward_only:
        raise UserError(f"{args.model} gives no log-density of data: {forward_only}. "
                        "`kerasflows sample` still draws from it.")
    noisy = model_dequantized_columns(args.model, flow.event_dim)
    names = model_column_names(args.model)
    x, context = _inputs(args, flow, names, noisy)
    if noisy:
        from kerasflows.dequantization import dequantize
        x = dequantize(x, noisy, seed=args.seed or 0)
    mean, se = evaluate_nll(flow, x, context=context)
    result = {"model": args.model, "data": args.data, "n": len(x), "nll": mean, "nll_se": se,
              "dequantized_columns": noisy}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"NLL of {args.data} under {args.model}: {mean:.4f} nats per example "
          f"(s.e. {se:.4f}, n={len(x)})")
    if noisy:
        print(f"(the model was trained with --dequantize: "
              f"{column_list(noisy, names)} got uniform noise in "
              f"[0, 1), seed {args.seed or 0}; the NLL of the whole numbers themselves is at "
              "most this, up to the noise's sampling error)")
    return 0
