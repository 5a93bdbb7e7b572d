"""`kerasflows evaluate MODEL DATA`: the mean negative log-likelihood of data under a flow.

With `--marginals`, also each column of DATA against as many samples of the
flow (drawn at DATA's contexts for a conditional flow): means, standard
deviations and the Kolmogorov-Smirnov gap (`kerasflows.marginals`), with
the gap that chance alone puts any of the D columns above 5% of the time
(each column at 5%/D, Bonferroni).

A dataset name's points are drawn with NumPy seed 2**31 + `--seed`, a seed
`train` never draws with (its `--seed` is at most 2**31-1): evaluate scores
fresh points, not the rows a model was trained on.
"""

import json
import math

import numpy as np

from kerasflows.cli.common import (SEED_MAX, HelpFormatter, UserError, add_context_argument,
                                   add_seed_argument, json_safe, open_flow, positive_int)
from kerasflows.cli.data import (check_column_names, check_columns, check_labels,
                                 check_whole_numbers, column_list, flow_data_dtype,
                                 is_dataset_name, model_column_names,
                                 model_dequantized_columns, plural, read_conditional_set,
                                 read_context, read_data)

__all__ = ["add_parser", "run", "DRAW_SEEDS", "draw_seed"]

#: The first NumPy seed of evaluate's draws of a dataset name, past every seed of
#: `train` (0..2**31-1): `--seed S` draws with DRAW_SEEDS + S, so evaluate never
#: draws the rows `train` drew (and split into its training set).
DRAW_SEEDS = SEED_MAX + 1


def add_parser(subparsers):
    p = subparsers.add_parser("evaluate", help="NLL of a dataset or data file under a model",
                              description=__doc__.split(":", 1)[1].strip(),
                              formatter_class=HelpFormatter)
    p.add_argument("model", help="a .keras file or a model folder (e.g. saved_models/moons)")
    p.add_argument("data", help="a dataset name (draws --n fresh points, see --seed; the "
                   "conditional sets "
                   "ring_radius and digits_label with their contexts) or a .npy/.csv file [N, D]")
    p.add_argument("--n", type=positive_int, default=None,
                   help="points to draw for a dataset name (default 10000; digits: 1797); "
                   "not for a data file")
    add_seed_argument(p, "seed of the draw for a dataset name (default 0; it draws with "
                      "NumPy seed 2**31 + SEED, which train never draws with: fresh points, "
                      "not train's; digits and digits_label have only 1797 images, train's "
                      "too, with fresh noise), of the "
                      "uniform noise a model trained with --dequantize adds to DATA (default "
                      "0) and of --marginals' samples (default 0); for a data file, only "
                      "the latter two", default=None)
    add_context_argument(p, "one row per data row")
    p.add_argument("--marginals", action="store_true",
                   help="also compare each column of DATA with as many samples of the flow "
                   "(seeded by --seed, default 0): means, standard deviations and the "
                   "Kolmogorov-Smirnov gap, beside the gap that chance puts any column above "
                   "5%% of the time")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def _inputs(args, flow, names=None, noisy=None):
    """`(x, context or None)`: DATA's rows and their contexts, checked against `flow`
    (a file's header against the model's column `names`; `noisy`, the model's
    dequantized columns, lets `--seed` seed their noise for a file)."""
    drawn = read_conditional_set(args.data, n=args.n, seed=draw_seed(args.seed),
                                 context=args.context)
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
    if (args.seed is not None and not is_dataset_name(args.data) and not noisy
            and not args.marginals):
        raise UserError(f"--seed seeds the draw of a dataset name; {args.data} is a file (all "
                        f"its rows are used), and {args.model} was not trained with "
                        "--dequantize (whose noise it would seed), nor are --marginals asked "
                        "for (whose samples it would seed).")
    x, _ = read_data(args.data, n=args.n, seed=draw_seed(args.seed),
                     dtype=flow_data_dtype(flow))
    check_columns(x, flow, args.data)
    check_column_names(args.data, names,
                       f"{args.model} was trained on")
    return x, read_context(args.context, flow, len(x), f"row of {args.data}", args.model)


def draw_seed(seed):
    """The NumPy seed of evaluate's draw of a dataset name for `--seed` `seed`
    (None: 0): `DRAW_SEEDS + seed`, never a seed `train` draws with."""
    return DRAW_SEEDS + (seed or 0)


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
        check_whole_numbers(args.data, x, noisy, names,
                            f"{args.model} was trained with --dequantize, which adds noise in "
                            f"[0, 1) to the whole numbers of {column_list(noisy, names)}")
        x = dequantize(x, noisy, seed=args.seed or 0)
    mean, se = evaluate_nll(flow, x, context=context)
    result = {"model": args.model, "data": args.data, "n": len(x), "nll": mean, "nll_se": se,
              "data_seed": draw_seed(args.seed) if is_dataset_name(args.data) else None,
              "dequantized_columns": noisy}
    if args.marginals:
        result["marginals"] = column_marginals(flow, x, context, args.seed or 0, names)
    if args.json:
        print(json.dumps(json_safe(result), allow_nan=False))     # NaN s.e.: null
        return 0
    spread = (f"s.e. {se:.4f}" if math.isfinite(se) else
              "no s.e. from one row" if len(x) == 1 else "s.e. not finite")
    print(f"NLL of {args.data} under {args.model}: {mean:.4f} nats per example "
          f"({spread}, n={len(x)})")
    if noisy:
        print(f"(the model was trained with --dequantize: "
              f"{column_list(noisy, names)} got uniform noise in "
              f"[0, 1), seed {args.seed or 0}; the NLL of the whole numbers themselves is at "
              "most this, up to the noise's sampling error)")
    if args.marginals:
        _print_marginals(result["marginals"], len(x))
    return 0


def column_marginals(flow, x, context=None, seed=0, names=None):
    """Each column of `x` against `len(x)` samples of `flow` (at `context`'s rows;
    drawn `SAMPLE_BLOCK` rows at a time, the first block with `seed`, the next with
    `block_seed`'s):
    `{"seed", "ks_threshold", "alpha_per_column", "columns": [{"column", "data_mean",
    "flow_mean", "data_std", "flow_std", "flow_finite", "ks"}, ...]}`; `ks_threshold`
    is the gap that chance puts any of the D columns above 5% of the time (each at
    5%/D), for the fewest finite samples of a column that has any (the gaps leave out
    samples that are not; a column with none has gap 1 and is beyond chance)."""
    from kerasflows import marginals
    names = names or [f"x{d + 1}" for d in range(x.shape[1])]
    samples = _blocked_samples(flow, len(x), context, seed)
    table = marginals.compare_marginals(samples, x)
    columns = [{"column": name, **{key: float(values[d]) for key, values in table.items()}}
               for d, name in enumerate(names)]
    alpha = 0.05 / x.shape[1]
    counts = np.isfinite(samples).sum(axis=0)
    finite = int(counts[counts > 0].min()) if counts.any() else len(x)
    return {"seed": seed, "ks_threshold": marginals.ks_threshold(finite, len(x), alpha),
            "alpha_per_column": alpha, "columns": columns}


#: Rows of samples `column_marginals` draws per call of `flow.sample`: one call of
#: all N held every layer's activations for N rows at once (2e6 rows of moons under
#: an NSF: 3.1 GB, against 0.7 GB for the NLL, which runs in batches).
SAMPLE_BLOCK = 65_536


def block_seed(seed, block):
    """The sampling seed of `column_marginals`' block `block` (0, 1, ...): `seed`
    itself for the first, so that up to `SAMPLE_BLOCK` rows are `flow.sample(n,
    seed=seed)`'s; then an integer in 0..2**31-1 drawn by NumPy's `SeedSequence`
    from `seed` and `block`. None (the flow's own stream) stays None."""
    if seed is None or block == 0:
        return seed
    return int(np.random.SeedSequence([seed % 2**32, block]).generate_state(1)[0] >> 1)


def _blocked_samples(flow, n, context, seed):
    """`n` samples of `flow` `[n, D]` (NumPy), drawn `SAMPLE_BLOCK` rows at a time
    with seeds `block_seed(seed, k)`, each block at its rows of `context` (one per
    sample; a one-row context is shared)."""
    blocks = []
    for k, start in enumerate(range(0, max(n, 1), SAMPLE_BLOCK)):     # n = 0: one empty
        rows = min(SAMPLE_BLOCK, n - start)
        at = context if context is None or len(context) == 1 else context[start:start + rows]
        blocks.append(flow.sample(rows, context=at, seed=block_seed(seed, k)).numpy())
    return np.concatenate(blocks)


def beyond_chance(found):
    """The columns of `column_marginals` whose gap is above its threshold, or that
    have no finite sample."""
    return [c for c in found["columns"]
            if c["ks"] > found["ks_threshold"] or not c.get("flow_finite", 1)]


def _print_marginals(found, n):
    width = max(6, *(len(c["column"]) for c in found["columns"]))
    beyond = beyond_chance(found)
    print(f"Marginals: {n} samples of the flow (seed {found['seed']}) against the {n} rows:")
    print(f"{'column':{width}s}  {'data mean':>10s}  {'flow mean':>10s}  {'data std':>10s}  "
          f"{'flow std':>10s}  {'KS':>6s}")
    for c in found["columns"]:
        flag = "  *" if c in beyond else ""
        print(f"{c['column']:{width}s}  {c['data_mean']:10.4g}  {c['flow_mean']:10.4g}  "
              f"{c['data_std']:10.4g}  {c['flow_std']:10.4g}  {c['ks']:6.4f}{flag}")
    if found["ks_threshold"] >= 1:      # a gap is at most 1: no row count can be flagged
        print(f"(KS: the largest gap between the two columns' empirical distribution "
              f"functions; {n} rows are too few to tell any gap from chance: the 5% "
              f"threshold, {found['ks_threshold']:.4f}, is above 1, the largest gap there is)")
        return
    print(f"(KS: the largest gap between the two columns' empirical distribution functions; "
          f"* above {found['ks_threshold']:.4f}, where chance alone puts any of the "
          f"{len(found['columns'])} columns 5% of the time)")


def marginals_line(found):
    """The line `train` prints on its test split's columns (`column_marginals`)."""
    beyond = beyond_chance(found)
    if found["ks_threshold"] >= 1:      # a gap is at most 1
        return (f"Test split, column by column: too few rows to tell any column's "
                f"distribution from the flow's samples (the 5% Kolmogorov-Smirnov threshold, "
                f"{found['ks_threshold']:.4f}, is above 1, the largest gap there is).")
    if not beyond:
        return (f"Test split, column by column: every column's distribution is within "
                f"chance of the flow's samples (Kolmogorov-Smirnov gap <= "
                f"{found['ks_threshold']:.4f}).")
    named = ", ".join(f"{c['column']} ({c['ks']:.4f})" for c in beyond[:5])
    more = f" and {len(beyond) - 5} more" if len(beyond) > 5 else ""
    return (f"Test split, column by column: {named}{more} beyond chance (Kolmogorov-Smirnov "
            f"gap > {found['ks_threshold']:.4f}); `kerasflows evaluate MODEL DATA --marginals` "
            f"shows every column.")
