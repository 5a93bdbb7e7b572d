"""`kerasflows train`'s data: DATA and `--context` read and checked, then split.

`read_inputs(args)` gives the rows (a dataset name's draw or a file's rows,
refused with a constant column, `check_continuous`) and their contexts;
`split_parts` shuffles them with `--seed` and cuts the test and validation
rows off (or reads `--validation-data` and `--test-data`, checked against
DATA's columns and their names). With `--dequantize`, `dequantized_columns`
names the whole-number columns (which those files must hold whole numbers in)
and `noisy_parts` gives the rows with one seeded draw of their noise, on
which the NLL is measured.
"""

import os
import sys

import numpy as np

from kerasflows.cli.common import UserError, plural
from kerasflows.cli.data import (check_column_names, check_whole_numbers, column_list,
                                 name_list, read_array, read_column_names, read_conditional_set,
                                 read_data, row_place)

__all__ = ["read_inputs", "split_parts", "check_continuous", "dequantized_columns",
           "noisy_parts"]


def split_parts(x, args, context=None):
    """`(train, validation or None, test or None)` after a seeded shuffle; each part is
    `(x,)`, or `(x, context)` when `context` (one row per row of `x`) is given."""
    order = np.random.default_rng(args.seed).permutation(len(x))
    x = x[order]
    columns = [x] if context is None else [x, context[order]]
    n_test = 0 if args.test_data else int(round(len(x) * args.test_split))
    if args.validation_data:
        n_val = 0
    else:
        n_val = int(round((len(x) - n_test) * args.validation_split))
    left = len(x) - n_test - n_val
    if left < 2:
        # one row: as a file of one row (`check_continuous`), the NLL has no minimum
        raise UserError(f"{args.data}: {'no training rows' if left == 0 else 'one training row'}"
                        f" left after the test and validation splits ({len(x)} rows, "
                        f"{n_test} to test, {n_val} to validate); a density fitted to one "
                        "point has no maximum. Give more rows, or smaller --test-split and "
                        "--validation-split.")
    cut = lambda start, stop: tuple(a[start:stop] for a in columns)
    train, val, test = cut(n_test + n_val, None), cut(n_test, n_test + n_val), cut(0, n_test)
    if args.validation_data:
        val = (read_array(args.validation_data),)
    if args.test_data:
        test = (read_array(args.test_data),)
    names = read_column_names(args.data)
    if names is not None and len(names) != x.shape[1]:
        names = None     # a header of another width: the model keeps no names (said above)
    for name, part in (("--validation-data", val), ("--test-data", test)):
        if part[0].shape[1] != x.shape[1]:
            raise UserError(f"{name} has {part[0].shape[1]} columns; {args.data} has "
                            f"{x.shape[1]}.")
        check_column_names(getattr(args, name[2:].replace("-", "_")), names,
                           f"{args.data} has")
    return train, (val if len(val[0]) else None), (test if len(test[0]) else None)


def read_inputs(args):
    """`(x, dataset name or None, context or None)` from DATA and `--context`."""
    drawn = read_conditional_set(args.data, n=args.n, seed=args.seed, context=args.context)
    if drawn is not None:
        x, dataset, context = drawn[0], args.data, drawn[1]
    else:
        (x, dataset), context = read_data(args.data, n=args.n, seed=args.seed), None
    if dataset is None:
        check_continuous(x, args.data, dequantizing=args.dequantize)
        _check_header_width(args.data, x.shape[1], "column names")
    elif args.dequantize:
        raise UserError(f"--dequantize adds noise to a data file's columns of whole numbers; "
                        f"the dataset {dataset} is continuous already.")
    context = _context_rows(args, x, context)
    if args.context is not None:
        _check_header_width(args.context, context.shape[1], "context column names")
    return x, dataset, context


def _check_header_width(spec, width, kept):
    """Warns (on stderr) when the CSV file `spec`'s header line names another number of
    columns than its rows hold: the model then keeps none of its names (`kept`)."""
    names = read_column_names(spec)
    if names is not None and len(names) != width:
        print(f"kerasflows: warning: {spec}: its header line names "
              f"{plural(len(names), 'column')} ({name_list(names)}); its rows have {width}: "
              f"the model keeps no {kept}.", file=sys.stderr, flush=True)


def dequantized_columns(args, x, parts):
    """The columns `--dequantize` adds noise to (DATA's whole-number columns, 0-based),
    or None without it; the `--validation-data` and `--test-data` rows of `parts`
    (train, validation, test) must hold whole numbers there."""
    if not args.dequantize:
        return None
    columns = _whole_columns(x)
    names = read_column_names(args.data)
    for spec, part in ((args.validation_data, parts[1]), (args.test_data, parts[2])):
        if spec and part is not None:
            check_whole_numbers(spec, part[0], columns, names,
                                f"--dequantize adds noise in [0, 1) to the whole numbers of "
                                f"{args.data}'s {column_list(columns, names)}")
    return columns


def _whole_columns(x):
    """The columns of `x` that `--dequantize` noises, 0-based:
    `kerasflows.dequantization.whole_number_columns(x)`, those of whole numbers
    only, one whole number in every row included (always 0, as pixels at an
    image's edge)."""
    from kerasflows.dequantization import whole_number_columns
    return whole_number_columns(x)


def _degenerate(x, dequantizing):
    """`kerasflows.data_warnings.degenerate_columns(x)`: `(constant, whole)`, the
    columns of one value in every row and the other columns of whole numbers only;
    `dequantizing`, the `whole` are the columns `--dequantize` noises
    (`_whole_columns`), and the `constant` the others of one value."""
    from kerasflows.data_warnings import degenerate_columns
    constant, whole = degenerate_columns(x)
    if not dequantizing:
        return constant, whole
    whole = _whole_columns(x)
    return [int(k) for k in constant if int(k) not in whole], whole


def noisy_parts(parts, columns, seed, files=(None, None, None)):
    """`parts` (train, validation, test; each `(x,)` or `(x, context)` or None) with
    one seeded draw of the uniform noise added to `columns`: the fixed rows their
    NLL is measured on (training itself draws new noise each epoch). A part read
    whole from a file of its own (`files`: `--validation-data`, `--test-data`) gets
    the draw `evaluate MODEL FILE --seed SEED` adds, so that reproduces its NLL."""
    if not columns:
        return parts
    from kerasflows.dequantization import dequantize
    return tuple(None if part is None else
                 (dequantize(part[0], columns, seed=seed if file else [seed, 0, 2 + k]),
                  *part[1:])
                 for k, (part, file) in enumerate(zip(parts, files)))


def check_continuous(x, spec, dequantizing=False):
    """Refuses a file with a column that holds one value in every row, and warns (on
    stderr) about columns of whole numbers only (maximum likelihood has no optimum
    on either: `kerasflows.data_warnings.degenerate_columns`), unless `dequantizing`
    them, which needs at least one (and then takes a column of one whole number in
    every row: `_whole_columns`)."""
    if len(x) < 2:
        raise UserError(f"{spec}: one row; a density fitted to one point has no maximum (the "
                        "NLL falls without bound as the flow narrows onto it). Give more rows.")
    constant, whole = _degenerate(x, dequantizing)
    names = read_column_names(spec)
    if names is not None and len(names) != x.shape[1]:
        names = None            # a header of another width names no column for sure
    label = lambda k: f"column {k + 1}" + (f" ({names[k]})" if names else "")
    if len(constant):
        k = int(constant[0])
        raise UserError(f"{spec}: {label(k)} holds one value, {x[0, k]:g}, in every row; a "
                        "density over it has no maximum (the NLL falls without bound as the "
                        "flow narrows onto that value). Drop the column.")
    if dequantizing and not len(whole):
        raise UserError(f"--dequantize: no column of {spec} holds whole numbers only (below "
                        "2**23 in magnitude), so there is nothing to dequantize.")
    if len(whole) and not dequantizing:
        listed = ", ".join(label(int(k)) for k in whole[:5]) + (", ..." if len(whole) > 5 else "")
        print(f"kerasflows: warning: {spec}: {plural(len(whole), 'column')} of whole numbers "
              f"only ({listed}): a continuous density can narrow onto each value, and its NLL "
              "fall without bound as training goes on. Give --dequantize to add uniform noise in "
              "[0, 1) to them, new each epoch (dequantization), unless they are readings "
              "that merely look whole.",
              file=sys.stderr, flush=True)


def _context_rows(args, x, context=None):
    """The `--context` array (or a conditional set's `context`) `[N, C]` matching
    DATA's rows, checked; or None."""
    if args.context is None and context is None:
        for flag, value in (("--context-encoder", args.context_encoder),
                            ("--context-classes", args.context_classes)):
            if value:
                raise UserError(f"{flag} needs --context (the contexts it encodes).")
        return None
    if args.validation_data or args.test_data:
        raise UserError("with a context, the validation and test rows come from "
                        "--validation-split and --test-split (--validation-data and "
                        "--test-data carry no contexts).")
    source = "--context" if context is None else f"{args.data}'s own context"
    if context is None:
        if not os.path.exists(args.context):
            # (evaluate and sample take values there too; a bare "0.5: no such file.")
            raise UserError(f"--context {args.context}: no such file; train reads the "
                            "contexts from a .npy or .csv file of one row per data row.")
        context = read_array(args.context)
    if len(context) != len(x):
        raise UserError(f"--context has {len(context)} rows; {args.data} has {len(x)} "
                        "(one context row per data row).")
    if args.context_classes:
        K = args.context_classes
        if context.ndim != 2 or context.shape[1] != 1:
            raise UserError(f"with --context-classes, {source} holds one label per row "
                            f"(shape [N, 1]); received shape {context.shape}.")
        bad = ~np.isin(context[:, 0], np.arange(K))
        if bad.any():
            row = int(np.argmax(bad))
            where = (f"{row_place(args.context, row)} of --context {args.context}"
                     if args.context is not None else f"row {row} of {source}")
            raise UserError(f"with --context-classes {K}, every label must be an integer in "
                            f"0..{K - 1}; {where} is {context[row, 0]:g}.")
    else:
        from kerasflows.data_warnings import degenerate_columns
        constant = degenerate_columns(context)[0]           # (none for one row)
        if len(constant):
            listed = ", ".join(f"{int(k) + 1} ({context[0, k]:g})" for k in constant[:5])
            print(f"kerasflows: warning: {source}: {plural(len(constant), 'column')} "
                  f"{listed} hold{'s' if len(constant) == 1 else ''} one value in every row; "
                  "the flow learns nothing of how the data depend on "
                  f"{'it' if len(constant) == 1 else 'them'}, and at any other value it "
                  "extrapolates.", file=sys.stderr, flush=True)
    return context
