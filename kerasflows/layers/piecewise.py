"""The exact piecewise-linear form of a one-input ReLU network.

A ReLU MLP of a single scalar input is a continuous piecewise-linear
function of that input: every hidden unit switches on or off at finitely
many input values, and between two consecutive switching points the whole
network is one affine map. Finding those points once turns the network into
a table (breakpoints, and a slope and intercept per piece), and evaluating
it costs a lookup and one multiply-add per output instead of the dense
layers. That is exact (up to float rounding) for the conditioners of 2-D
coupling layers, whose input is the one pass-through coordinate.
"""

import numpy as np
import tensorflow as tf

__all__ = ["PiecewiseLinear", "lookup"]

#: Refuse tables with more pieces than this (deep, wide nets can have many).
MAX_PIECES = 200_000
#: Lookup cells per breakpoint (a power of two, at most 65,536 cells). Trained
#: conditioners bunch their breakpoints; finer cells keep the few compared per
#: point few (at 4 per breakpoint up to 20 of a 157-piece table fell in one cell).
CELLS_PER_BREAK = 64


def _affine_pieces(layers):
    """Breakpoints `[K-1]`, slopes and intercepts `[K, out]` of a ReLU stack.

    `layers` is a list of `(kernel [in, out], bias [out], relu)` with a
    scalar input. Works in float64.
    """
    lo, hi = np.array([-np.inf]), np.array([np.inf])
    slope, icpt = np.ones((1, 1)), np.zeros((1, 1))   # the input itself
    for kernel, bias, relu in layers:
        slope, icpt = slope @ kernel, icpt @ kernel + bias
        if not relu:
            continue
        pieces = []
        with np.errstate(divide="ignore", invalid="ignore"):
            cross = -icpt / slope                      # where each unit changes sign
        for i in range(len(lo)):
            t = cross[i]
            t = np.unique(t[(t > lo[i]) & (t < hi[i])])
            edges = np.concatenate([[lo[i]], t, [hi[i]]])
            a, b = edges[:-1], edges[1:]
            mid = np.where(np.isinf(a), b - 1.0, np.where(np.isinf(b), a + 1.0, 0.5 * (a + b)))
            on = (mid[:, None] * slope[i] + icpt[i]) > 0
            pieces.append((a, b, on * slope[i], on * icpt[i]))
        lo, hi, slope, icpt = (np.concatenate(p) for p in zip(*pieces))
        if len(lo) > MAX_PIECES:
            raise ValueError(f"the network has more than {MAX_PIECES} linear pieces; "
                             "too many to tabulate.")
    return hi[:-1], slope, icpt


class PiecewiseLinear:
    """A one-input ReLU network as a lookup table: `table(x [batch, 1]) -> [batch, out]`.

    Build it with `PiecewiseLinear.from_mlp(mlp)`. The table is a snapshot:
    it does not follow later changes of the network's weights.

    The piece of `x` is found without a search (which XLA compiles poorly):
    the range of the breakpoints is cut into `cells` equal cells, each cell
    stores how many breakpoints lie below it and the few that lie inside it,
    and the piece index is that count plus the inside breakpoints `<= x`.
    As the function is continuous, a point rounded into a neighbouring piece
    at a breakpoint still gets the same value.

    Attributes:
        breaks: sorted breakpoints, numpy `[pieces - 1]`.
        slopes, intercepts: numpy `[pieces, out]`.
    """

    def __init__(self, breaks, slopes, intercepts, dtype="float32"):
        self.dtype = tf.as_dtype(dtype)
        np_dtype = self.dtype.as_numpy_dtype
        self.breaks = np.asarray(breaks, np.float64)
        self.slopes, self.intercepts = np.asarray(slopes), np.asarray(intercepts)
        self.pieces, self.out_units = self.slopes.shape
        self._compiled = None
        self._columns = {}    # `columns` / `columns_and_pieces`, per output order
        self._row_tables = {}  # `row_tables`, per output order and width
        # Two tables, not one of both: XLA gathers two narrow rows faster than one wide one.
        self._slopes = tf.constant(self.slopes, self.dtype)
        self._intercepts = tf.constant(self.intercepts, self.dtype)
        b = self.breaks.astype(np_dtype)
        if len(b) == 0:
            self._cells = None
            return
        wanted = 1 << int(np.ceil(np.log2(CELLS_PER_BREAK * len(b))))
        cells = int(min(1 << 16, max(16, wanted)))
        lo = b[0]
        scale = np_dtype(cells / max(float(b[-1] - lo), 1e-30))
        cell_of = np.clip(np.floor((b - lo) * scale), 0, cells - 1).astype(np.int64)
        below = np.searchsorted(cell_of, np.arange(cells), side="left")
        count = np.bincount(cell_of, minlength=cells)
        inside = np.full((cells, int(count.max())), np.finfo(np_dtype).max, np_dtype)
        for c in np.nonzero(count)[0]:
            inside[c, :count[c]] = b[below[c]:below[c] + count[c]]
        self._cells = (cells, tf.constant(lo, self.dtype), tf.constant(scale, self.dtype),
                       tf.constant(below, tf.int32), tf.constant(inside, self.dtype))

    @classmethod
    def from_mlp(cls, mlp):
        """The table of a built `kerasflows.layers.MLP` with one input and ReLU (or
        linear) hidden activations.

        Raises:
            ValueError: if the network has more than one input, another
                activation, or too many pieces.
        """
        if mlp.activation not in ("relu", "linear"):
            raise ValueError("only ReLU (or linear) networks are piecewise linear; "
                             f"received activation={mlp.activation!r}.")
        dense = [*mlp.hidden, mlp.out]
        if not mlp.built or dense[0].kernel.shape[0] != 1:
            shape = None if not mlp.built else tuple(dense[0].kernel.shape)
            raise ValueError("only a built network with one input can be tabulated; "
                             f"received a first kernel of shape {shape}.")
        layers = [(d.kernel.numpy().astype(np.float64), d.bias.numpy().astype(np.float64),
                   mlp.activation == "relu" and d is not mlp.out) for d in dense]
        return cls(*_affine_pieces(layers), dtype=dense[0].kernel.dtype)

    def piece(self, x):
        """Index `[batch]` of the piece holding each `x [batch]`."""
        if self._cells is None:
            return tf.zeros(tf.shape(x), tf.int32)
        cells, lo, scale, below, inside = self._cells
        cell = tf.cast(tf.clip_by_value(tf.floor((x - lo) * scale), 0, cells - 1), tf.int32)
        above = tf.cast(x[:, None] >= tf.gather(inside, cell), tf.int32)
        return tf.gather(below, cell) + tf.reduce_sum(above, -1)

    def lookup(self, x):
        """`[batch, out]` for `x [batch, 1]`, as plain TensorFlow ops."""
        x = tf.cast(x, self.dtype)
        piece = self.piece(x[:, 0])
        return tf.gather(self._slopes, piece) * x + tf.gather(self._intercepts, piece)

    def __call__(self, x):
        """`lookup(x)` compiled by XLA on its own (see `kerasflows.tabulate` for why)."""
        if self._compiled is None:
            self._compiled = tf.function(self.lookup, jit_compile=True)
        return self._compiled(x)

    def columns(self, x, order=None):
        """The outputs transposed, `[len(order), batch]`, for `x [batch, 1]`, compiled by XLA.

        Row `i` is output `order[i]` (all outputs in their order by
        default): a caller that wants its outputs grouped differently, such
        as a spline that wants its bins first, gets them that way without a
        transpose of the whole result.
        """
        return self._columns_fn(order, with_pieces=False)(x)

    def columns_and_pieces(self, x, order=None):
        """`(columns(x, order), pieces)`, compiled by XLA as one function: also the
        piece index `[batch]` of each `x`, for later lookups with `lookup`."""
        return self._columns_fn(order, with_pieces=True)(x)

    def _columns_fn(self, order, with_pieces):
        order = tuple(range(self.out_units)) if order is None else tuple(int(i) for i in order)
        key = (order, with_pieces)
        if key not in self._columns:
            np_dtype = self.dtype.as_numpy_dtype
            slopes_t = np.ascontiguousarray(self.slopes[:, order].T, np_dtype)
            intercepts_t = np.ascontiguousarray(self.intercepts[:, order].T, np_dtype)
            rows = len(order)

            def run(x):   # (numpy tables: each trace embeds its own constants)
                slopes = tf.constant(slopes_t.ravel())
                intercepts = tf.constant(intercepts_t.ravel())
                x = tf.cast(x, self.dtype)
                piece = self.piece(x[:, 0])
                # One flat gather with `[rows, batch]` indices: each row reads its own
                # short table row; a gather along axis 1 would transpose a copy.
                index = (tf.range(rows)[:, None] * self.pieces) + piece
                out = tf.gather(slopes, index) * x[:, 0] + tf.gather(intercepts, index)
                return (out, piece) if with_pieces else out
            self._columns[key] = tf.function(run, jit_compile=True, autograph=False,
                                             reduce_retracing=True)
        return self._columns[key]

    def row_tables(self, order, pieces=None):
        """Slopes and intercepts of the outputs `order`, `[len(order), pieces]` each.

        Row `i` holds output `order[i]` of every piece, padded with zeros up
        to `pieces` columns (at least `self.pieces`; default: no padding),
        so the tables of networks with different piece counts can share one
        shape. Read them with `lookup`. The tensors are made once per
        `(order, pieces)` and eagerly (also when asked for while a
        `tf.function` traces), so every later call and trace reuses them.
        """
        pieces = self.pieces if pieces is None else int(pieces)
        if pieces < self.pieces:
            raise ValueError(f"`pieces` must be at least the table's {self.pieces} pieces. "
                             f"Received: pieces={pieces}")
        order = tuple(int(i) for i in order)
        if (order, pieces) not in self._row_tables:
            out = []
            for table in (self.slopes, self.intercepts):
                padded = np.zeros((len(order), pieces), self.dtype.as_numpy_dtype)
                padded[:, :self.pieces] = table[:, list(order)].T
                with tf.init_scope():
                    out.append(tf.constant(padded))
            self._row_tables[(order, pieces)] = tuple(out)
        return self._row_tables[(order, pieces)]


def lookup(tables, rows, piece, x):
    """Table outputs at given rows: `slopes[rows, piece] * x + intercepts[rows, piece]`.

    `tables` is `(slopes, intercepts)` from `PiecewiseLinear.row_tables`;
    `rows` (int) and `piece` (from `columns_and_pieces`) broadcast against
    each other and against `x`, the network's input. Plain TensorFlow ops,
    to be used inside an XLA-compiled function: each point reads the few
    outputs it needs instead of a whole column of every output.
    """
    slopes, intercepts = tables
    flat = rows * tf.shape(slopes)[1] + piece
    return (tf.gather(tf.reshape(slopes, [-1]), flat) * x
            + tf.gather(tf.reshape(intercepts, [-1]), flat))
