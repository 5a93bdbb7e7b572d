"""`SplineKnots`: the knots of a monotonic rational-quadratic spline on
`[-bound, bound]` (Durkan et al. 2019, "Neural Spline Flows") from raw
conditioner outputs, so that a zero output gives exactly the identity, and the
spline's transform and log-det evaluated by fused kernels (`transform`) or
through TFP's `tfb.RationalQuadraticSpline` (`bijector`)."""

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from kerasflows.layers.base import check_positive_int
from kerasflows.layers.checks import real_number
from kerasflows.layers.coupling import directed_bijector
from kerasflows.layers.piecewise import lookup

tfb = tfp.bijectors

__all__ = ["SplineKnots", "BATCH_INNER_MIN_DIMS"]


def _check_number(name, value, low, high, low_open=False, why=""):
    """Returns `value` as a float in `[low, high)` (`(low, high)` if `low_open`); `why`
    explains the bounds in the error. A bool, a string or an array is refused too
    (`real_number`)."""
    v = real_number(value)     # NaN for a bool, a string or an array: refused below
    ok = (low < v if low_open else low <= v) and v < high
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g})"
        raise ValueError(f"`{name}` must be a number in {interval}{why}. Received: "
                         f"{name}={value!r}")
    return v


def _knot_positions(sizes, bound):
    """Knot coordinates `[..., bins + 1]` from bin sizes, starting at `-bound`."""
    start = tf.fill(tf.shape(sizes[..., :1]), tf.constant(-bound, sizes.dtype))
    return tf.concat([start, tf.cumsum(sizes, -1) - bound], -1)


def _q_max(dtype):
    """The largest coefficient the inverse's quadratic takes unscaled, `2^(e - 2)`
    for a dtype whose largest value is below `2^(2 e)` (2^62 in float32): then
    `qb^2 + 4 |qa qc|` stays below the largest value."""
    return 2.0 ** (np.finfo(dtype.as_numpy_dtype).maxexp // 2 - 2)


def _q_scale(dtype):
    """The power of 2 that takes any coefficient up to the dtype's largest value
    below `_q_max(dtype)` (2^-66 in float32)."""
    return 2.0 ** -(np.finfo(dtype.as_numpy_dtype).maxexp // 2 + 2)


def _tiny(dtype):
    """The least normal number of a float dtype (1.2e-38 for float32)."""
    return float(np.finfo(dtype.as_numpy_dtype).tiny)


#: `SplineKnots.compiled_kernel`'s functions, per configuration and direction.
_COMPILED_KERNELS = {}


#: From this many transformed dimensions on, `SplineKnots.transform` lays the
#: parameters out `[bins, batch, n]` (the points' dimensions innermost) instead of
#: `[bins, n, batch]`. See `transform`.
BATCH_INNER_MIN_DIMS = 8


class SplineKnots:
    """Maps raw conditioner outputs to the knots of a rational-quadratic spline.

    For `bins` bins the raw parameters of one dimension are `3 * bins - 1`
    numbers: `bins` for the widths, `bins` for the heights, `bins - 1` for
    the interior knot slopes (the two boundary slopes are 1, as in TFP, so
    the spline joins the identity tails smoothly). Widths and heights are
    `2 * bound * (min + (1 - bins * min) * softmax(raw))`; slopes are
    `min_slope + softplus(raw + c)` with `c = log(expm1(1 - min_slope))`, so
    a raw output of zero gives equal bins and unit slopes: the identity.

    Args:
        bins: number of bins (>= 2).
        bound: the spline acts on `[-bound, bound]` (> 0, and a number of `dtype`
            whose double is one too).
        min_bin_width, min_bin_height: lower bounds on the bin sizes, as a
            fraction of `2 * bound` (> 0 and < 1 / bins: at 0 a bin's softmax
            weight underflows to 0 for moderately large conditioner outputs, and
            the empty bin gave NaN or -inf log-densities at points as near as 100).
        min_slope: lower bound on the interior slopes (in `[0, 1)`).

        dtype: the layer's variable dtype, whose numbers `bound` must allow.

    Raises:
        ValueError: naming the first bad argument.
    """

    def __init__(self, bins=8, bound=5.0, min_bin_width=1e-3, min_bin_height=1e-3,
                 min_slope=1e-3, dtype="float32"):
        self.bins = check_positive_int("bins", bins, minimum=2)
        # the interval's width 2 * bound, and its least bins, are numbers of `dtype`
        # (2e38 in float32 made every output NaN, and 1e-46 was 0: the identity)
        info = np.finfo(np.dtype(dtype))
        self.bound = _check_number("bound", bound, float(info.tiny), float(info.max) / 4,
                                   why=f" for {np.dtype(dtype).name} layers")
        # `bins` bins of the least size must fit in the interval: the default 1e-3 allows
        # up to 999 bins, and more bins need a smaller least size
        least = {}
        for name, value in (("min_bin_width", min_bin_width), ("min_bin_height", min_bin_height)):
            too_big = real_number(value) >= 1.0 / self.bins
            why = (f", below 1 / bins for bins={self.bins}" + (
                f" (lower it for that many bins, e.g. {name}={0.1 / self.bins:g})"
                if too_big else ""))
            least[name] = _check_number(name, value, 0.0, 1.0 / self.bins, low_open=True,
                                        why=why)
        self.min_bin_width, self.min_bin_height = least["min_bin_width"], least["min_bin_height"]
        self.min_slope = _check_number("min_slope", min_slope, 0.0, 1.0)
        self.slope_offset = math.log(math.expm1(1.0 - self.min_slope))

    @property
    def params_per_dim(self):
        """Raw parameters per transformed dimension: `3 * bins - 1`."""
        return 3 * self.bins - 1

    def _sizes(self, raw, minimum, axis=-1):
        """Bin sizes from raw values, the bins along `axis` (a softmax written out:
        `tf.nn.softmax` on an axis other than the last transposes twice)."""
        e = tf.exp(raw - tf.reduce_max(raw, axis, keepdims=True))
        return 2 * self.bound * (minimum + (1 - self.bins * minimum)
                                 * (e / tf.reduce_sum(e, axis, keepdims=True)))

    def _slope(self, raw):
        return self.min_slope + tf.nn.softplus(raw + self.slope_offset)

    def knots(self, params):
        """Splits `params [..., 3*bins-1]` into `(widths, heights, slopes)` for TFP."""
        b = self.bins
        widths = self._sizes(params[..., :b], self.min_bin_width)
        heights = self._sizes(params[..., b:2 * b], self.min_bin_height)
        return widths, heights, self._slope(params[..., 2 * b:])

    def bijector(self, params, direction="forward"):
        """The elementwise `tfb.RationalQuadraticSpline` for raw `params` (inverted for
        `direction="inverse"`: the spline is then the bijector's inverse)."""
        widths, heights, slopes = self.knots(params)
        return directed_bijector(
            tfb.RationalQuadraticSpline(widths, heights, slopes, range_min=-self.bound), direction)

    def transform(self, params, v, inverse=False, params_first=False):
        """The spline of `bijector(params)` applied to `v [batch, n]` in one pass.

        `params` is `[batch, n, 3*bins-1]`, or `[batch, 3*bins-1, n]` with
        `params_first=True`. Returns `(out, log_det)`, `log_det [batch]`
        summed over the `n` dimensions. See `kernel`, which this calls with
        the bins first.

        The kernel's elementwise loops vectorise along the innermost axis, so
        for a few dimensions (`n < BATCH_INNER_MIN_DIMS`) the parameters are
        laid out `[bins, n, batch]` and `v` transposed to `[n, batch]`; from
        8 dimensions on, `[bins, batch, n]` with `v` as it is. The second
        keeps the transposes between the conditioner's `[batch, ...]` output
        and the kernel, forward and in the gradient, to moving whole rows
        (params-first) or a short innermost axis: with the first layout XLA
        fused the whole spline gradient into the transposing copy back to the
        conditioner's layout, a copy that took 9 ms a layer in the 72 ms
        training step of the 64-D NSF-AR (5 layers, 512 rows). Side by side
        (`benchmarks/spline_layout_ab.py`, medians): 64-D NSF-AR training
        step 71 -> 36 ms, `log_prob` of 8,192 rows 448 -> 239 ms, 8-D 12.0
        -> 7.8 ms a step; 64-D NSF coupling `log_prob` 171 -> 133 ms,
        `sample(10_000)` 195 -> 168 ms, its training step within the noise
        (31.1 against 32.5 ms); below 8 dimensions the second is the slower
        one (2-D NSF-AR `log_prob` 9.4 against 18.5 ms).
        """
        n = v.shape[-1]
        if n is not None and n >= BATCH_INNER_MIN_DIMS:
            bins_first = tf.transpose(params, [1, 0, 2] if params_first else [2, 0, 1])
            out, log_det = self.kernel(bins_first, v, inverse)
            return out, tf.reduce_sum(log_det, -1)
        bins_first = tf.transpose(params, [1, 2, 0] if params_first else [2, 1, 0])
        out, log_det = self.kernel(bins_first, tf.transpose(v), inverse)
        return tf.transpose(out), tf.reduce_sum(log_det, 0)

    def compiled_kernel(self, inverse):
        """`unrolled_kernel` compiled by XLA on its own, shared by every `SplineKnots`
        with the same configuration (cached per configuration and direction).

        For callers outside an XLA cluster that already hold all the
        bins-first parameters and want values, not gradients (the tabulated
        coupling layers of `kerasflows.tabulate` use `compiled_table_kernel`,
        which reads the slopes from their table). The kernel depends on
        nothing but the configuration, so the layers of a flow share one
        function and XLA compiles each input shape once, not once per layer.
        """
        key = (tuple(sorted(self.get_config().items())), bool(inverse))
        if key not in _COMPILED_KERNELS:
            _COMPILED_KERNELS[key] = tf.function(
                lambda p, v: self.unrolled_kernel(p, v, inverse),
                jit_compile=True, autograph=False, reduce_retracing=True)
        return _COMPILED_KERNELS[key]

    def compiled_table_kernel(self, inverse):
        """`unrolled_kernel` reading the interior slopes from a conditioner's table,
        compiled by XLA; shared like `compiled_kernel`.

        Returns `fn(sizes, piece, x0, v, slopes, intercepts) -> (out, log_det)`
        for a tabulated coupling layer (`kerasflows.tabulate`): `sizes
        [2*bins, n, N]` are the raw width and height parameters (bins
        first) of `v [n, N]`, `piece [N]` and `x0 [N]` the conditioner's
        table piece and input at each point (`PiecewiseLinear.
        columns_and_pieces`), and `slopes`, `intercepts` the table rows of
        the raw interior slopes (`PiecewiseLinear.row_tables`, row
        `j * (bins - 1) + m` for slope `m` of dimension `j`). Each point
        reads only the two slopes of its bin, so the `bins - 1` slope
        columns are never written out: the same numbers as `compiled_kernel`
        on all `3 * bins - 1` columns, about 8% faster for a whole 2-D
        spline flow on a 256x256 grid.
        """
        key = ("table", tuple(sorted(self.get_config().items())), bool(inverse))
        if key not in _COMPILED_KERNELS:
            def run(sizes, piece, x0, v, slopes, intercepts):
                first_row = tf.range(tf.shape(v)[0])[:, None] * (self.bins - 1)

                def raw_slopes(index):
                    return lookup((slopes, intercepts), first_row + index, piece, x0)
                return self.unrolled_kernel(sizes, v, inverse, raw_slopes=raw_slopes)
            _COMPILED_KERNELS[key] = tf.function(run, jit_compile=True, autograph=False,
                                                 reduce_retracing=True)
        return _COMPILED_KERNELS[key]

    def kernel(self, p, v, inverse=False):
        """The spline on bins-first parameters: `p [3*bins-1, *shape]`, `v [*shape]`.

        Returns `(out, log_det)`, both `[*shape]` (the log-det of each
        element, not summed). Same formulas as TFP's `RationalQuadraticSpline`
        (Durkan et al. 2019, appendix A); the bin is picked with a one-hot
        mask instead of a search and gathers, and the inverse reuses its bin
        and relative position for the log-det, so the graph (and its
        gradient) is a few elementwise ops. With the bins on the first axis
        every reduction over the bins is an elementwise sum of `bins` slices,
        which vectorises along the points (about 3x faster on CPU than
        reducing a short innermost axis), and the cumulative sums are one
        small matmul.
        """
        b, dtype = self.bins, p.dtype
        widths = self._sizes(p[:b], self.min_bin_width, axis=0)
        heights = self._sizes(p[b:2 * b], self.min_bin_height, axis=0)
        strict_lower = tf.constant(np.tri(b, k=-1), dtype)
        x_left = tf.tensordot(strict_lower, widths, 1) - self.bound
        y_left = tf.tensordot(strict_lower, heights, 1) - self.bound
        inside = (v > -self.bound) & (v < self.bound)
        v_in = tf.where(inside, v, tf.zeros_like(v))
        above = tf.cast(v_in >= (y_left if inverse else x_left), dtype)
        onehot = above - tf.concat([above[1:], tf.zeros_like(above[:1])], 0)
        pick = lambda t: tf.reduce_sum(onehot * t, 0)
        x_k, y_k, w_k, h_k = pick(x_left), pick(y_left), pick(widths), pick(heights)
        # The slopes go through softplus after the pick: two per point, not `b - 1`.
        # The boundary slopes are 1 (a raw value of 0): bin k's left slope is
        # interior slope k - 1 (none for k = 0), its right slope interior slope k.
        raw = p[2 * b:]
        d_k = self._slope(tf.reduce_sum(onehot[1:] * raw, 0))
        d_kp1 = self._slope(tf.reduce_sum(onehot[:-1] * raw, 0))
        return self._rational_quadratic(v, v_in, inside, x_k, y_k, w_k, h_k, d_k, d_kp1,
                                        inverse)

    def unrolled_kernel(self, p, v, inverse=False, raw_slopes=None):
        """`kernel` for evaluation: the same spline, written one bin at a time.

        Same arguments, results and formulas as `kernel` (equal up to float
        rounding: the knots are running sums here). With `raw_slopes`, `p`
        holds only the `2 * bins` width and height rows and the raw interior
        slopes come from `raw_slopes(index)`, called with the int32 indices
        `[*shape]` (in `[0, bins - 2]`) of the slopes each element needs
        (see `compiled_table_kernel`). Apart from one maximum
        over the bins, every op is elementwise on `[*shape]` slices, with
        the bins unrolled in Python (running sums for the softmax and knots,
        a running select for the bin), so XLA's fused loops read and write
        `[*shape]` arrays instead of `[bins, *shape]` ones: about 2x faster
        than `kernel` on 65,536 points. Its graph grows with the bins and
        its gradient is slower to compile and to run, so training uses
        `kernel`.
        """
        b, bound = self.bins, self.bound
        rows = tf.unstack(p, axis=0)

        def sizes(raw, minimum):
            top = tf.reduce_max(tf.stack(raw), 0)
            e = [tf.exp(r - top) for r in raw]
            total = e[0]
            for t in e[1:]:
                total = total + t
            scale = 2 * bound * (1 - b * minimum) / total
            return [2 * bound * minimum + t * scale for t in e]

        widths = sizes(rows[:b], self.min_bin_width)
        heights = sizes(rows[b:2 * b], self.min_bin_height)
        inside = (v > -bound) & (v < bound)
        v_in = tf.where(inside, v, tf.zeros_like(v))
        zero = tf.zeros_like(v)
        x_left = y_left = tf.fill(tf.shape(v), tf.constant(-bound, p.dtype))
        x_k, y_k, w_k, h_k = x_left, y_left, widths[0], heights[0]
        # Bin 0 unless a later left knot is <= v: its raw boundary slope is 0 (slope 1).
        if raw_slopes is None:
            raw = rows[2 * b:]
            raw_k, raw_kp1 = zero, raw[0]
        else:
            k = tf.zeros(tf.shape(v), tf.int32)
        for j in range(1, b):
            x_left, y_left = x_left + widths[j - 1], y_left + heights[j - 1]
            hit = v_in >= (y_left if inverse else x_left)
            x_k, y_k = tf.where(hit, x_left, x_k), tf.where(hit, y_left, y_k)
            w_k, h_k = tf.where(hit, widths[j], w_k), tf.where(hit, heights[j], h_k)
            if raw_slopes is None:
                raw_k = tf.where(hit, raw[j - 1], raw_k)
                raw_kp1 = tf.where(hit, raw[j] if j < b - 1 else zero, raw_kp1)
            else:
                k = tf.where(hit, j, k)
        if raw_slopes is not None:   # bin k's slopes are interior slopes k - 1 and k
            raw_k = tf.where(k > 0, raw_slopes(tf.maximum(k - 1, 0)), zero)
            raw_kp1 = tf.where(k < b - 1, raw_slopes(tf.minimum(k, b - 2)), zero)
        return self._rational_quadratic(v, v_in, inside, x_k, y_k, w_k, h_k, self._slope(raw_k),
                                        self._slope(raw_kp1), inverse)

    def _rational_quadratic(self, v, v_in, inside, x_k, y_k, w_k, h_k, d_k, d_kp1, inverse):
        """The spline in its bin (left knot `(x_k, y_k)`, size `w_k x h_k`, knot slopes
        `d_k`, `d_kp1`), the identity outside `inside`; `(out, log_det)`."""
        s_k = h_k / w_k
        if inverse:
            rel_y = v_in - y_k
            term = rel_y * (d_kp1 + d_k - 2 * s_k)
            qa, qb, qc = h_k * (s_k - d_k) + term, h_k * d_k - term, -s_k * rel_y
            # A knot slope of ~1e19 in float32 (a conditioner's output for a pass-through
            # coordinate far out) overflowed qb^2 - 4 qa qc, and a point inside the bound
            # went to inf. The three are at most 6 bound (d_k + d_kp1 + s_k) in size, and
            # are scaled by one power of 2 where that may pass `_q_max`: the root stays
            # as it was, and ordinary points are not scaled at all.
            big = d_k + d_kp1 + s_k > _q_max(qa.dtype) / (6 * self.bound)
            scale = tf.where(big, tf.constant(_q_scale(qa.dtype), qa.dtype), tf.ones_like(qa))
            qa, qb, qc = qa * scale, qb * scale, qc * scale
            # The root in [0, 1] of qa r^2 + qb r + qc (qc <= 0 <= qa + qb + qc), in the
            # form without cancellation: 2 qc / (-qb - sqrt(D)) for qb >= 0, and
            # (-qb + sqrt(D)) / (2 qa) for qb < 0 (then qa >= -qb > 0). The first form
            # alone loses most digits when qb < 0 and 4 qa qc << qb^2 (a steep right
            # knot). One division of the selected numerator and denominator.
            root_d = tf.sqrt(tf.maximum(qb * qb - 4 * qa * qc, 0))
            negative_b = qb < 0
            # -qb - sqrt(D) is 0 only on a knot of slope 0 (qb = qc = 0: min_slope=0 and
            # an underflowed softplus), where the root is 0: less the dtype's least normal
            # number it is never 0, and it is unchanged wherever it is above ~2^24 times
            # that. (Setting rel to 0 where rel_y == 0 instead cut the gradient at every
            # knot: dx/dy was 0 on one, such as 0 for a new layer with an even number of
            # bins. A double select, 0 there and a safe denominator inside, made the
            # inverse kernel with its gradient ~15% slower on 65,536 points.)
            rel = (tf.where(negative_b, root_d - qb, 2 * qc)
                   / tf.where(negative_b, 2 * qa, -qb - root_d - _tiny(qa.dtype)))
            # Rounding (float32, a steep bin beside a flat one) put the root just outside
            # [0, 1], or the discriminant just below 0: the point left its bin, and the
            # log-det, a log of a negative number, was NaN (about 1e-4 of points for
            # conditioner outputs ~N(0, 5^2)). Both are held to their ranges.
            rel = tf.clip_by_value(rel, tf.zeros_like(rel), tf.ones_like(rel))
            out = rel * w_k + x_k
        else:
            # In [0, 1] in exact arithmetic; a point by the bin's right knot came out
            # just above 1 where the knots' running sum rounded below it (XLA's sum of
            # a wide bin and narrow ones put the last knot at 4.999999 for a point at
            # 4.9999995), and next to a steep knot the log-det's denominator was then
            # negative: NaN. Held to [0, 1], as the inverse's root is.
            rel = tf.clip_by_value((v_in - x_k) / w_k, tf.zeros_like(v_in), tf.ones_like(v_in))
            out = y_k + h_k * (s_k * rel * rel + d_k * rel * (1 - rel)) / (
                s_k + (d_kp1 + d_k - 2 * s_k) * rel * (1 - rel))
        one_minus = 1 - rel
        log_det = (2 * tf.math.log(s_k)
                   + tf.math.log(d_kp1 * rel * rel + 2 * s_k * rel * one_minus
                                 + d_k * one_minus * one_minus)
                   - 2 * tf.math.log((d_kp1 + d_k - 2 * s_k) * rel * one_minus + s_k))
        log_det = tf.where(inside, log_det, tf.zeros_like(log_det))
        return tf.where(inside, out, v), -log_det if inverse else log_det

    def get_config(self):
        return {"bins": self.bins, "bound": self.bound, "min_bin_width": self.min_bin_width,
                "min_bin_height": self.min_bin_height, "min_slope": self.min_slope}
