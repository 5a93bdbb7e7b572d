"""Rational-quadratic spline layers: `SplineCoupling` and `SplineAutoregressive` (NSF).

Neural spline flows (Durkan et al. 2019, "Neural Spline Flows") transform
each dimension with a monotonic rational-quadratic spline on
`[-bound, bound]` and the identity outside it. The spline is TFP's
`tfb.RationalQuadraticSpline`; `SplineKnots` (`spline_knots`) turns raw conditioner outputs
into its knots, so that a zero output gives exactly the identity.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from kerasflows.layers.autoregressive import AutoregressiveLayer
from kerasflows.layers.coupling import CouplingLayer, check_direction, runs_inverse
from kerasflows.layers.spline_knots import SplineKnots

tfb = tfp.bijectors

__all__ = ["SplineCoupling", "SplineAutoregressive"]

#: Values (rows x event dimensions) per block when a flow's eager call
#: (`eval_mode` "xla", or "graph" from 16-D on) evaluates a large batch
#: through spline layers block by block: 8,192 rows of 2-D data,
#: 1,024 of 64-D (a row's spline intermediates are `bins` wide in every
#: dimension, and smaller blocks of wide rows stay in cache), never fewer than
#: `MIN_BLOCK_ROWS` rows. Measured (`benchmarks/eval_blocks.py`, density of
#: 65,536 rows by a 5-layer NSF): 64-D coupling 0.80x the time and 0.16x the
#: memory of the whole batch, 64-D NSF-AR 0.83x and 0.12x.
SPLINE_BLOCK_VALUES = 8192 * 8
MIN_BLOCK_ROWS = 256
#: Spline coupling layers of fewer dimensions evaluate whole batches: on 2-D
#: data blocks took the same time (density and sampling 1.01x) and memory,
#: and the first call 0.4-0.9 s longer (the loop traced twice and compiled);
#: from 8-D on they take less memory (8-D 0.62x, 16-D 0.38x) in no more time.
COUPLING_BLOCKS_FROM_DIM = 8


def spline_block_rows(event_dim, target):
    """Rows per block for spline layers on `event_dim`-D rows, at most `target`."""
    return min(target, max(MIN_BLOCK_ROWS, SPLINE_BLOCK_VALUES // event_dim))


@keras.saving.register_keras_serializable(package="kerasflows")
class SplineCoupling(CouplingLayer):
    """Rational-quadratic spline coupling (NSF-C, Durkan et al. 2019).

    The first `num_masked` dimensions pass through and condition a
    monotonic spline of each remaining dimension on `[-bound, bound]`
    (identity outside). By default (`spline_direction="inverse"`) the
    spline is the density direction, `z1 = spline(x1)`, and sampling solves
    it (`x1 = spline^-1(z1)`, a quadratic per point), as zuko's and nflows'
    spline flows; `"forward"` makes the spline the sampling direction, as
    `tfb.RationalQuadraticSpline` in a `tfb.RealNVP`. The two are different
    families of maps (the inverse of a rational-quadratic spline is not
    one), and on the benchmark's 2-D densities the inverse form fitted
    better (the README's measurements). The new layer is the identity (zero-initialised
    conditioner output). `bijector()` returns a `tfb.RealNVP` whose
    `bijector_fn` gives the spline (see `CouplingLayer`).

    Example:

    ```python
    flow = kerasflows.Flow([SplineCoupling(bins=8), Permute(), SplineCoupling(bins=8)],
                           event_dim=2)
    ```

    Args:
        bins, bound, min_bin_width, min_bin_height, min_slope: see `SplineKnots`.
        hidden_units, activation, num_masked, context_dim: see `CouplingLayer`.
        spline_direction: `"inverse"` or `"forward"`: the direction that is the
            spline (see above). Layers saved without this setting (kerasflows
            0.1.0) load as `"forward"`, the map they were trained with.

    Raises:
        ValueError: for a bad argument, naming it.
    """

    eval_in_blocks = True
    # Saved before `spline_direction` existed: the spline was the forward.
    legacy_config = {"spline_direction": "forward"}

    def eval_block_rows(self, target):
        """Fewer rows per block for wider rows (`spline_block_rows`); 2-D and
        other narrow data (`COUPLING_BLOCKS_FROM_DIM`) runs whole batches."""
        if self.event_dim is None or self.event_dim < COUPLING_BLOCKS_FROM_DIM:
            return None
        return spline_block_rows(self.event_dim, target)

    def __init__(self, bins=8, bound=5.0, hidden_units=(64, 64), activation="relu",
                 num_masked=None, context_dim=None, min_bin_width=1e-3, min_bin_height=1e-3,
                 min_slope=1e-3, spline_direction="inverse", **kwargs):
        super().__init__(hidden_units, activation, num_masked, context_dim, **kwargs)
        self.knots = SplineKnots(bins, bound, min_bin_width, min_bin_height, min_slope,
                                 dtype=self.variable_dtype)
        self.params_per_dim = self.knots.params_per_dim
        self.spline_direction = check_direction("spline_direction", spline_direction)

    def inner_bijector(self, params):
        return self.knots.bijector(params, self.spline_direction)

    def elementwise(self, params, x1, inverse):
        return self.knots.transform(params, x1, runs_inverse(inverse, self.spline_direction))

    def transform_part(self, x0, x1, context, inverse):
        if self.table is None:
            return super().transform_part(x0, x1, context, inverse)
        # Tabulated (inference copies, see `kerasflows.tabulate`): the table gives the
        # width and height parameters bins first, with each point's piece; the
        # XLA-compiled kernel takes them as they are and reads the two interior slopes
        # each point needs from the table itself. Two compiled calls with nothing in
        # between to transpose or fuse badly.
        n, p, b = self.transformed, self.params_per_dim, self.knots.bins
        outputs = np.arange(n * p).reshape(n, p)       # the net's outputs, `[n, p]` per point
        sizes, piece = self.table.columns_and_pieces(x0, outputs[:, :2 * b].T.ravel())
        # Padded as the table's own lookups (`PiecewiseLinear.share_shapes`): the layers
        # of a flow share compilations.
        slope_tables = self.table.row_tables(outputs[:, 2 * b:].ravel(),
                                             self.table.padded_pieces)
        spline_inverse = runs_inverse(inverse, self.spline_direction)
        y1, log_det = self.knots.compiled_table_kernel(spline_inverse)(
            tf.reshape(sizes, [2 * b, n, -1]), piece, tf.cast(x0[:, 0], sizes.dtype),
            tf.transpose(x1), *slope_tables)
        return tf.transpose(y1), tf.reduce_sum(log_det, 0)

    def get_config(self):
        return {**super().get_config(), **self.knots.get_config(),
                "spline_direction": self.spline_direction}


@keras.saving.register_keras_serializable(package="kerasflows")
class SplineAutoregressive(AutoregressiveLayer):
    """Autoregressive rational-quadratic spline (NSF-AR, Durkan et al. 2019).

    Each dimension goes through a spline whose knots a `MADE` computes from
    the preceding data dimensions (and the context), as in MAF: the inverse
    (density) takes one MADE pass, the forward (sampling) one per dimension.
    Identity outside `[-bound, bound]` and at initialisation. As in
    `SplineCoupling`, the spline is the density direction by default
    (`spline_direction="inverse"`: `z_d = spline_d(x_d)`, as zuko's NSF) or
    the sampling direction (`"forward"`).

    Args:
        bins, bound, min_bin_width, min_bin_height, min_slope: see `SplineKnots`.
        hidden_units, activation, context_dim: see `AutoregressiveLayer`.
        spline_direction: `"inverse"` or `"forward"` (see `SplineCoupling`).

    Raises:
        ValueError: for a bad argument, naming it.
    """

    eval_in_blocks = True
    # Saved before `spline_direction` existed: the spline was the forward.
    legacy_config = {"spline_direction": "forward"}

    def eval_block_rows(self, target):
        """Fewer rows per block for wider rows (`spline_block_rows`)."""
        return None if self.event_dim is None else spline_block_rows(self.event_dim, target)

    def __init__(self, bins=8, bound=5.0, hidden_units=(64, 64), activation="relu",
                 context_dim=None, min_bin_width=1e-3, min_bin_height=1e-3, min_slope=1e-3,
                 spline_direction="inverse", **kwargs):
        super().__init__(hidden_units, activation, context_dim, **kwargs)
        self.knots = SplineKnots(bins, bound, min_bin_width, min_bin_height, min_slope,
                                 dtype=self.variable_dtype)
        self.params_per_dim = self.knots.params_per_dim
        self.spline_direction = check_direction("spline_direction", spline_direction)

    def transform_kwargs(self, params_fn):
        def spline(y, **unused):
            return self.knots.bijector(params_fn(y), self.spline_direction)
        return {"bijector_fn": spline}

    def elementwise(self, params, v, inverse):
        return self.knots.transform(params, v, runs_inverse(inverse, self.spline_direction),
                                    params_first=True)

    def get_config(self):
        return {**super().get_config(), **self.knots.get_config(),
                "spline_direction": self.spline_direction}
