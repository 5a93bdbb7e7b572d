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
            # a point inside each piece (the whole line's: 0; inf - 1 gave NaN, read as off)
            mid = np.where(np.isinf(a) & np.isinf(b), 0.0, np.where(
                np.isinf(a), b - 1.0, np.where(np.isinf(b), a + 1.0, 0.5 * (a + b))))
            on = (mid[:, None] * slope[i] + icpt[i]) > 0
            pieces.append((a, b, on * slope[i], on * icpt[i]))
        lo, hi, slope, icpt = (np.concatenate(p) for p in zip(*pieces))
        if len(lo) > MAX_PIECES:
            raise ValueError(f"the network has more than {MAX_PIECES} linear pieces; "
                             "too many to tabulate.")
    return hi[:-1], slope, icpt


def _power_of_two(n):
    return 1 << int(np.ceil(np.log2(max(int(n), 1))))


def _default_cells(breaks):
    """Lookup cells for `breaks` breakpoints: `CELLS_PER_BREAK` each, a power of two
    in [16, 65,536] (1 without breakpoints)."""
    if breaks == 0:
        return 1
    return int(min(1 << 16, max(16, _power_of_two(CELLS_PER_BREAK * breaks))))


def _pieces_of(x, lo, scale, last_cell, below, inside, last_piece):
    """The piece index `[batch]` of each `x [batch]` (see `PiecewiseLinear`)."""
    cell = tf.cast(tf.clip_by_value(tf.floor((x - lo) * scale), 0, last_cell), tf.int32)
    above = tf.cast(x[:, None] >= tf.gather(inside, cell), tf.int32)
    return tf.minimum(tf.gather(below, cell) + tf.reduce_sum(above, -1), last_piece)


def _rows_run(x, slopes, intercepts, *cells):
    """`[batch, out]` from the tables `[pieces, out]`."""
    x = tf.cast(x, slopes.dtype)
    piece = _pieces_of(x[:, 0], *cells)
    return tf.gather(slopes, piece) * x + tf.gather(intercepts, piece)


def _columns_run(x, slopes, intercepts, *cells, with_pieces):
    """`[rows, batch]` (and the pieces) from the transposed tables `[rows, pieces]`."""
    x = tf.cast(x, slopes.dtype)[:, 0]
    piece = _pieces_of(x, *cells)
    # One flat gather with `[rows, batch]` indices: each row reads its own short table
    # row; a gather along axis 1 would transpose a copy.
    index = tf.range(tf.shape(slopes)[0])[:, None] * tf.shape(slopes)[1] + piece
    out = (tf.gather(tf.reshape(slopes, [-1]), index) * x
           + tf.gather(tf.reshape(intercepts, [-1]), index))
    return (out, piece) if with_pieces else out


def _rows_lookup(x, slopes, intercepts, *cells):
    return _rows_run(x, slopes, intercepts, *cells)


def _columns_lookup(x, slopes, intercepts, *cells):
    return _columns_run(x, slopes, intercepts, *cells, with_pieces=False)


def _columns_and_pieces_lookup(x, slopes, intercepts, *cells):
    return _columns_run(x, slopes, intercepts, *cells, with_pieces=True)


_LOOKUPS = {"rows": _rows_lookup, "columns": _columns_lookup,
            "columns_and_pieces": _columns_and_pieces_lookup}

#: The XLA-compiled lookups, shared by every table: the tables are arguments, so
#: tables of the same (padded) shapes share one compilation per input shape.
_SHARED = {}


def _shared(name, args):
    """The compiled lookup `name` called on `args`. It is traced once, at its first
    call, with every dimension left free: one graph for every table and batch, which
    XLA compiles for each shape it meets (a trace at the first shape and another,
    relaxed, at the second cost two; and the order in which shapes come no longer
    decides which graph a shape is compiled from)."""
    args = tuple(tf.convert_to_tensor(a) for a in args)
    if name not in _SHARED:
        fn = tf.function(_LOOKUPS[name], jit_compile=True, autograph=False,
                         reduce_retracing=True)
        fn.get_concrete_function(*[tf.TensorSpec([None] * len(a.shape), a.dtype)
                                   for a in args])
        _SHARED[name] = fn
    return _SHARED[name](*args)


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

    The compiled lookups (`__call__`, `columns`, `columns_and_pieces`) are
    shared by all tables and take the table as arguments, padded to a power
    of two pieces and cell width: tables of the same padded shapes (after
    `share_shapes`, the tables of a flow whose cell widths round alike)
    compile once per input shape, not once each.

    Attributes:
        breaks: sorted breakpoints, numpy `[pieces - 1]`.
        slopes, intercepts: numpy `[pieces, out]`.
        padded_pieces: the pieces the compiled lookups' tables are padded to.
    """

    def __init__(self, breaks, slopes, intercepts, dtype="float32"):
        self.dtype = tf.as_dtype(dtype)
        self.breaks = np.asarray(breaks, np.float64)
        self.slopes, self.intercepts = np.asarray(slopes), np.asarray(intercepts)
        self.pieces, self.out_units = self.slopes.shape
        # Two tables, not one of both: XLA gathers two narrow rows faster than one wide one.
        self._slopes = tf.constant(self.slopes, self.dtype)
        self._intercepts = tf.constant(self.intercepts, self.dtype)
        self._row_tables = {}  # `row_tables`, per output order and width
        self.padded_pieces = _power_of_two(self.pieces)
        self._set_cells(_default_cells(len(self.breaks)))

    def _set_cells(self, cells):
        """Cuts the breakpoints' range into `cells` cells, each as wide as the fullest
        cell's count of breakpoints, rounded up to a power of two."""
        np_dtype = self.dtype.as_numpy_dtype
        b = self.breaks.astype(np_dtype)
        big = np.finfo(np_dtype).max
        if len(b) == 0:       # one piece: every x in cell 0, no breakpoint above it
            lo, scale = np_dtype(0), np_dtype(0)
            below, count = np.zeros(cells, np.int64), np.zeros(cells, np.int64)
        else:
            lo = b[0]
            scale = np_dtype(cells / max(float(b[-1] - lo), 1e-30))
            cell_of = np.clip(np.floor((b - lo) * scale), 0, cells - 1).astype(np.int64)
            below = np.searchsorted(cell_of, np.arange(cells), side="left")
            count = np.bincount(cell_of, minlength=cells)
        width = _power_of_two(count.max())
        inside = np.full((cells, width), big, np_dtype)
        for c in np.nonzero(count)[0]:
            inside[c, :count[c]] = b[below[c]:below[c] + count[c]]
        self.cells, self.cell_width = cells, width
        self._cell_args = (lo, scale, np_dtype(cells - 1), below.astype(np.int32), inside,
                           np.int32(self.pieces - 1))
        self._args = {}       # the compiled lookups' arguments, per layout and order

    @staticmethod
    def share_shapes(tables):
        """Gives `tables` the same cell count and padded pieces (the largest of
        each), so that their compiled lookups share compilations; tables whose
        fullest cells round to the same power of two then have one shape. (The
        cell widths stay their own: each point compares `x` with a whole cell,
        and the widest cell of a flow is often twice the others: about 5%
        slower sampling in a 2-D NSF when all were padded to it.)"""
        tables = list(tables)
        if not tables:
            return
        cells = max(t.cells for t in tables)
        pieces = max(t.padded_pieces for t in tables)
        for t in tables:
            t.padded_pieces = pieces
            if t.cells != cells:
                t._set_cells(cells)
            t._args = {}

    def _cells_tensors(self):
        """`_pieces_of`'s table arguments, as tensors."""
        lo, scale, last_cell, below, inside, last_piece = self._cell_args
        return (tf.constant(lo, self.dtype), tf.constant(scale, self.dtype),
                tf.constant(last_cell, self.dtype), tf.constant(below),
                tf.constant(inside, self.dtype), tf.constant(last_piece))

    def _arguments(self, layout, order=None):
        """The compiled lookups' table arguments, made once (eagerly, also when asked
        for while a `tf.function` traces): `"rows"` `[padded, out]` tables, or
        `"columns"` `[len(order), padded]` ones."""
        key = (layout, order)
        if key not in self._args:
            np_dtype = self.dtype.as_numpy_dtype
            tables = []
            for table in (self.slopes, self.intercepts):
                if layout == "columns":
                    table = table[:, list(order)].T
                    padded = np.zeros((len(order), self.padded_pieces), np_dtype)
                    padded[:, :self.pieces] = table
                else:
                    padded = np.zeros((self.padded_pieces, self.out_units), np_dtype)
                    padded[:self.pieces] = table
                tables.append(padded)
            with tf.init_scope():
                self._args[key] = (*(tf.constant(t) for t in tables), *self._cells_tensors())
        return self._args[key]

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
        """Index `[batch]` of the piece holding each `x [batch]`, as plain TensorFlow ops."""
        return _pieces_of(tf.cast(x, self.dtype), *self._cells_tensors())

    def lookup(self, x):
        """`[batch, out]` for `x [batch, 1]`, as plain TensorFlow ops."""
        return _rows_run(x, self._slopes, self._intercepts, *self._cells_tensors())

    def __call__(self, x):
        """`lookup(x)` compiled by XLA on its own (see `kerasflows.tabulate` for why)."""
        return _shared("rows", (x, *self._arguments("rows")))

    def _order(self, order):
        return tuple(range(self.out_units)) if order is None else tuple(int(i) for i in order)

    def columns(self, x, order=None):
        """The outputs transposed, `[len(order), batch]`, for `x [batch, 1]`, compiled by XLA.

        Row `i` is output `order[i]` (all outputs in their order by
        default): a caller that wants its outputs grouped differently, such
        as a spline that wants its bins first, gets them that way without a
        transpose of the whole result.
        """
        return _shared("columns", (x, *self._arguments("columns", self._order(order))))

    def columns_and_pieces(self, x, order=None):
        """`(columns(x, order), pieces)`, compiled by XLA as one function: also the
        piece index `[batch]` of each `x`, for later lookups with `lookup`."""
        return _shared("columns_and_pieces",
                       (x, *self._arguments("columns", self._order(order))))

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
