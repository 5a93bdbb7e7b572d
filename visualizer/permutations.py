"""Following two coordinates through the layers of a flow that reorder them.

A layer such as `Permute` moves each coordinate to another position. When a
flow with D > 2 is drawn in two coordinates with the others held fixed, the
positions shown after such a layer hold other coordinates (often ones held
fixed, so the grid collapses). The Layers view instead follows the two
coordinates: it finds, from the states a trace returns, which steps only
reorder the coordinates and where each one goes. No TensorFlow, no Qt.
"""

import numpy as np

__all__ = ["column_sources", "followed_positions", "column_orders"]


def column_sources(before, after):
    """How one step reordered the coordinates, from its input and output states.

    Args:
        before: `[N, D]` points before the step.
        after: `[N, D]` the same points after it.

    Returns:
        `source [D]` (ints) with `after[:, j]` an exact copy of
        `before[:, source[j]]` for every `j`, when the step only reorders the
        coordinates; None when it changed any of them (a coupling, a linear
        mix). Identical input columns are matched in order.
    """
    before, after = np.asarray(before), np.asarray(after)
    if before.shape != after.shape or before.ndim != 2:
        raise ValueError(f"before and after must be [N, D] of one shape; received "
                         f"{before.shape} and {after.shape}.")
    D = before.shape[1]
    unused = {}
    for i in range(D):
        unused.setdefault(np.ascontiguousarray(before[:, i]).tobytes(), []).append(i)
    keys = [np.ascontiguousarray(after[:, j]).tobytes() for j in range(D)]
    source = np.full(D, -1)
    for j, key in enumerate(keys):          # a coordinate left in place keeps its position
        if j in unused.get(key, ()):
            source[j] = j
            unused[key].remove(j)
    for j, key in enumerate(keys):
        if source[j] < 0:
            if not unused.get(key):
                return None
            source[j] = unused[key].pop(0)
    return source


def followed_positions(sources, dims, from_end):
    """The positions of the two coordinates shown in each of the L+1 states.

    Args:
        sources: per step, `column_sources` of it (None: a step that leaves
            every coordinate at its position).
        dims: the two coordinates shown.
        from_end: True when `dims` are the coordinates of the last state
            (base to data: the data coordinates chosen), False for the first
            (data to base).

    Returns:
        `[L+1, 2]` ints: state k shows its columns `positions[k]`.
    """
    return column_orders(sources, max(dims) + 1, from_end)[:, list(dims)]


def column_orders(sources, event_dim, from_end):
    """Where each coordinate of the data end is in each of the L+1 states.

    Args:
        sources: per step, `column_sources` of it (None: a step that leaves
            every coordinate at its position).
        event_dim: D (at least the largest position asked for, + 1).
        from_end: True when the data end is the last state (base to data),
            False when it is the first (data to base).

    Returns:
        `[L+1, D]` ints: state k holds the data end's coordinate p in its column
        `orders[k, p]`, so `state[:, orders[k]]` is in the data's order (a
        picture's pixels each in their place, not reversed after a `Permute`).
    """
    L = len(sources)
    orders = np.zeros((L + 1, event_dim), int)
    if from_end:
        orders[L] = np.arange(event_dim)
        for k in range(L, 0, -1):
            source = sources[k - 1]
            orders[k - 1] = orders[k] if source is None else source[orders[k]]
    else:
        orders[0] = np.arange(event_dim)
        for k in range(1, L + 1):
            source = sources[k - 1]
            orders[k] = orders[k - 1] if source is None else np.argsort(source)[orders[k - 1]]
    return orders
