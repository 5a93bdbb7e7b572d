"""Uniform dequantization: training a continuous flow on whole-number data.

A continuous density fitted by maximum likelihood to data that take whole
values only (counts, pixel levels, ratings) can narrow onto each value, and
its NLL fall without bound. The standard remedy adds uniform noise
u ~ U[0, 1) to those columns, fresh each epoch: the flow's density p then
models the noisy values, and P(k) = integral of p over [k, k + 1) is a
discrete distribution with log P(k) >= E_u[log p(k + u)] (Jensen; Theis,
van den Oord and Bethge 2016, "A note on the evaluation of generative
models", section 3.1), so the noisy data's NLL is an upper bound on the
discrete data's. Samples of the discrete model are the flow's samples
rounded down in those columns.

- `dequantize(x, columns=None, seed=None)`: one draw of the noise, NumPy.
- `dequantized_dataset(x, batch_size, ...)`: a `tf.data.Dataset` for
  `Flow.fit` that draws new noise (and a new order) every epoch.
- `whole_number_columns(x)`: the columns that hold whole numbers only (one
  whole number in every row included), the default `columns`.

`kerasflows train --dequantize` does the same for the command line, and
`evaluate` and `sample` then add the noise and round down for that model.
"""

import numpy as np
import tensorflow as tf

from kerasflows.datasets import seeded_generator
from kerasflows.layers.checks import check_bool, check_positive_int

__all__ = ["dequantize", "dequantized_dataset", "whole_number_columns", "floor_columns",
           "columns_to_dequantize", "check_columns", "LARGEST_WHOLE"]


def whole_number_columns(x):
    """The indices of the columns of `x` `[N, D]` (N >= 2; else none) that hold
    whole numbers only, below `data_warnings.FRACTIONS_BELOW` in magnitude
    (`kerasflows.data_warnings.degenerate_columns`' `whole`), and of those that
    hold one whole number in every row (an image's always-0 edge pixels: noised,
    such a column is uniform on [k, k + 1), a density with a maximum; left
    alone, the flow narrows onto the value and the NLL falls without bound).
    Sorted; the default `columns` of `dequantize` and `dequantized_dataset`, and
    the columns `kerasflows train --dequantize` noises."""
    from kerasflows.data_warnings import FRACTIONS_BELOW, degenerate_columns
    x = np.asarray(x)
    constant, whole = degenerate_columns(x)
    one_number = [int(k) for k in constant
                  if float(x[0, k]).is_integer() and abs(float(x[0, k])) < FRACTIONS_BELOW]
    return sorted([int(k) for k in whole] + one_number)


def _check_x(x, where):
    x = np.asarray(x)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{where}: x must be a numeric array of shape [N, D]; received "
                         f"shape {x.shape}, dtype {x.dtype}.")
    return x


#: float32 holds every whole number up to 2**24 exactly, and none much beyond:
#: the largest magnitude a noised column may hold. (From 2**23 on it holds whole
#: numbers only, and the noise is lost: `data_warnings.FRACTIONS_BELOW`, below which
#: a column counts as whole numbers, as the default columns are chosen.)
LARGEST_WHOLE = 2 ** 24


def columns_to_dequantize(x, columns, where):
    """`columns` checked against `x`'s width, or the whole-number columns of `x`;
    their finite values must be whole numbers (noise on a value between two would
    move it: see `dequantize`) within float32's (`LARGEST_WHOLE`)."""
    if columns is None:
        if len(x) < 2:
            raise ValueError(f"{where}: x has {len(x)} row(s), too few to tell whole-number "
                             "columns from constant ones; pass columns=[...] (the columns "
                             "the flow was trained with noise on).")
        columns = whole_number_columns(x)
        if not columns:
            raise ValueError(f"{where}: no column of x holds whole numbers only, so there is "
                             "nothing to dequantize by default; pass columns=[...] to add "
                             "the noise to chosen columns.")
    columns = check_columns(columns, x.shape[1], where)
    if columns and len(x):
        largest = np.abs(x[:, columns]).max(axis=0)
        if (largest >= LARGEST_WHOLE).any():
            k = int(np.argmax(largest >= LARGEST_WHOLE))
            raise ValueError(
                f"{where}: column {columns[k]} holds {float(largest[k]):.6g}; noise in [0, 1) "
                f"needs whole numbers below 2**24 = {LARGEST_WHOLE:,} in magnitude, beyond "
                "which float32 cannot tell k from k + 1; shift or rescale the column first.")
        _check_whole(x, columns, where)
    return columns


def first_not_whole(x, columns):
    """`(row, k, value)` of the first finite value of `x` in `columns` (`k` indexes
    `columns`) that is not a whole number, or None."""
    values = x[:, columns]
    between = np.isfinite(values) & (values != np.floor(values))
    if not between.any():
        return None
    row, k = (int(i) for i in np.argwhere(between)[0])
    return row, k, values[row, k]


def _check_whole(x, columns, where):
    """A ValueError naming the first finite value of `x` in `columns` that is not a
    whole number."""
    found = first_not_whole(x, columns)
    if found is not None:
        row, k, value = found
        raise ValueError(
            f"{where}: column {columns[k]} of x holds {value!s} in row {row}, not a whole "
            "number; the noise in [0, 1) takes each whole number k into its cell [k, k + 1), "
            "and would move a value between two. Round it first, or leave the column out of "
            "columns.")


def check_columns(columns, width, where):
    """`columns` as a list of ints: distinct column indices in 0..width-1, or a
    ValueError naming `where` and them."""
    try:
        if isinstance(columns, (str, bytes)):
            raise TypeError     # list("all") would be its characters
        columns = list(columns)
    except TypeError:
        raise ValueError(f"{where}: columns must be a list of column indices in "
                         f"0..{width - 1}; received {columns!r}.") from None
    bad = [c for c in columns if isinstance(c, bool) or not isinstance(c, (int, np.integer))
           or not 0 <= c < width]
    if bad or len(set(columns)) != len(columns):
        raise ValueError(f"{where}: columns must be distinct column indices in 0..{width - 1}; "
                         f"received {columns}.")
    return [int(c) for c in columns]


def _below_next_whole(noisy, whole):
    """`noisy` (float32) kept below `whole + 1`: float32's rounding of k + u for u close
    to 1 gives k + 1, a value of the next cell."""
    return np.minimum(noisy, np.nextafter(whole + np.float32(1), np.float32(-np.inf)))


def dequantize(x, columns=None, seed=None):
    """`x` (float32, a copy) with uniform noise in [0, 1) added to `columns`.

    Each noisy value stays in its cell [k, k + 1), so `floor_columns` gives
    back k; the noise is as fine as float32 is there (steps of 2**-10 at
    10**4, 2**-5 at 3 * 10**5). The columns must hold whole numbers: a value
    between two (2.5) is refused, as is a column beyond 2**24 in magnitude
    (`LARGEST_WHOLE`), where float32 cannot tell k from k + 1.

    Args:
        x: data `[N, D]`.
        columns: the column indices to add noise to (columns of whole numbers);
            default: the columns that hold whole numbers only
            (`whole_number_columns`; an error if none).
        seed: an integer >= 0, a sequence of them, or None (fresh noise), as
            `numpy.random.default_rng` takes; the same seed gives the same noise.

    Raises:
        ValueError: bad `columns` or `seed`, or a value in the columns that is
            not a whole number or is beyond `LARGEST_WHOLE`.
    """
    x = _check_x(x, "dequantize")
    columns = columns_to_dequantize(x, columns, "dequantize")
    out = np.array(x, np.float32)
    noise = seeded_generator(seed).random((len(out), len(columns)), dtype=np.float32)
    whole = out[:, columns]
    out[:, columns] = _below_next_whole(
        (whole.astype(np.float64) + noise).astype(np.float32), np.floor(whole))
    return out


def floor_columns(x, columns):
    """`x` (a NumPy copy) with `columns` rounded down: a dequantized flow's samples as
    the whole numbers of the data it was trained on."""
    out = np.array(x, copy=True)
    if out.ndim != 2:
        raise ValueError(f"floor_columns: x must have shape [N, D]; received shape {out.shape}.")
    columns = check_columns(columns, out.shape[1], "floor_columns")
    out[:, columns] = np.floor(out[:, columns])
    return out


def dequantized_dataset(x, batch_size=512, *, context=None, columns=None, seed=None,
                        shuffle=True):
    """A `tf.data.Dataset` of batches of `x` with uniform noise in [0, 1) added to
    `columns`, new noise each time it is iterated (each epoch of `Flow.fit`);
    each noisy value in its cell [k, k + 1), as `dequantize`'s.

        data = kerasflows.dequantization.dequantized_dataset(counts, batch_size=512, seed=0)
        flow.fit(data, epochs=20)

    Args:
        x: data `[N, D]`.
        batch_size: rows per batch (the last batch may be shorter).
        context: for a conditional flow, `[N, C]` contexts, one row per row of
            `x`; batches are then `(x, context)` (no noise on the context).
        columns: the column indices to add noise to (columns of whole numbers, as
            `dequantize`'s); default: the columns that hold whole numbers only (an
            error if none).
        seed: an int in [0, 2**63) seeds the order and the noise, as tf.data's op
            seeds do: together with TensorFlow's global seed (`keras.utils.
            set_random_seed`), so the same seed under the same global seed (or
            none) gives the same epochs, epoch after epoch; None draws them
            afresh.
        shuffle: a new order of the rows every epoch.

    Each epoch draws one permutation of the row indices and gathers each batch
    whole (memory: `x` and `context` once, and one index per row), then adds
    the batch's noise.
    """
    x = _check_x(x, "dequantized_dataset")
    if not len(x):
        raise ValueError(f"dequantized_dataset: x has no rows (shape {x.shape}); give at "
                         "least one.")
    columns = columns_to_dequantize(x, columns, "dequantized_dataset")
    batch_size = check_positive_int("batch_size", batch_size)
    shuffle = check_bool("shuffle", shuffle)        # ("no" shuffled)
    if seed is not None:    # TensorFlow's errors named neither the argument nor the value
        seed = check_positive_int("seed", seed, minimum=0)
        if seed >= 2 ** 63:
            raise ValueError(f"`seed` must be below 2**63 (an int64). Received: seed={seed}")
    x = np.asarray(x, np.float32)
    if context is not None:
        context = np.asarray(context, np.float32)
        if context.ndim != 2 or len(context) != len(x):
            raise ValueError(f"dequantized_dataset: context must have shape [{len(x)}, C] "
                             f"(one row per row of x); received shape {context.shape}.")
    mask = np.zeros(x.shape[1], np.float32)
    mask[columns] = 1.0
    tensors = (tf.constant(x),) if context is None else (tf.constant(x), tf.constant(context))
    batches = -(-len(x) // batch_size)
    # one key per epoch (a new one each time the dataset is iterated), from the seed
    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2).take(1)
    data = keys.flat_map(lambda key: _epoch(tensors, key, batch_size, shuffle,
                                            tf.constant(mask)))
    return data.apply(tf.data.experimental.assert_cardinality(batches)).prefetch(
        tf.data.AUTOTUNE)


def _epoch(tensors, key, batch_size, shuffle, mask):
    """One epoch of `dequantized_dataset`: batches of `tensors` (`(x,)` or `(x,
    context)`) in one order of the row indices (a permutation drawn from `key`, or
    as they are), each gathered whole, with noise on `x`'s `mask` columns from
    `key` folded with the batch's index."""
    n = int(tensors[0].shape[0])
    order_key, noise_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    order = tf.range(n, dtype=tf.int64)
    if shuffle:
        order = tf.random.experimental.stateless_shuffle(order, seed=order_key)

    def batch(i):
        rows = order[i * batch_size:(i + 1) * batch_size]
        x = _add_noise(tf.gather(tensors[0], rows), mask,
                       tf.random.experimental.stateless_fold_in(noise_key, i))
        return x if len(tensors) == 1 else (x, tf.gather(tensors[1], rows))

    batches = -(-n // batch_size)
    return tf.data.Dataset.range(batches).map(batch, num_parallel_calls=tf.data.AUTOTUNE)


def _add_noise(rows, mask, key):
    """`rows` with uniform noise in [0, 1) from `key` on the columns where `mask` > 0,
    each noisy value kept below the next whole number (see `dequantize`)."""
    noise = tf.random.stateless_uniform(tf.shape(rows), seed=key, dtype=rows.dtype)
    below_next = tf.math.nextafter(tf.floor(rows) + 1.0, tf.constant(-np.inf, rows.dtype))
    return tf.where(mask > 0, tf.minimum(rows + noise, below_next), rows)
