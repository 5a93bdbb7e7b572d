"""The words of the Layers view: its states' names, its axis labels and the note
on coordinates that Permute layers move.

Pure functions of the states' `positions` (`[L+1, 2]`, the columns of each
state drawn) and the direction; `name(dim, space)` names a coordinate (the
view's `axis_name`: x1 or the data's column name, z1).
"""

import re

import numpy as np

__all__ = ["moved", "axis_labels", "positions_note", "state_names", "short_layer_name"]


def _spaces(forward):
    """The spaces the first and last states are in: base z then data x, or back."""
    return ("z", "x") if forward else ("x", "z")


def moved(positions):
    """True when the coordinates shown sit at other positions in some states."""
    return not np.all(positions == positions[0])


def axis_labels(positions, k, forward, name):
    """`[bottom, left]`: each axis the coordinate it starts as → the one it ends as,
    and, when they move, the position drawn in state `k`."""
    start, end = _spaces(forward)
    first, last = positions[0], positions[-1]
    labels = []
    for a in (0, 1):
        label = f"{name(first[a], start)} → {name(last[a], end)}"
        if moved(positions):
            label += f"   (here: position {positions[k][a] + 1})"
        labels.append(label)
    return labels


def positions_note(positions, forward, name):
    """The note saying which coordinates the plot follows through reorderings."""
    start, end = _spaces(forward)
    first, last = positions[0], positions[-1]
    return ("Layers that reorder coordinates (Permute) move the two coordinates shown; "
            f"the plot follows them: {name(first[0], start)}, {name(first[1], start)} become "
            f"{name(last[0], end)}, {name(last[1], end)} (the axis labels name the positions "
            "drawn at each layer).")


def short_layer_name(label):
    """A layer label "Class (name)" as the states say it: the class, with the name
    only where it tells more ("ActNorm (standardize)", "Permute (checkerboard)");
    numbered names ("spline_0") and the class's own ("affine_coupling") drop."""
    cls, _, name = label.partition(" (")
    name = name[:-1] if name.endswith(")") else name
    own = re.sub(r"(?<!^)(?=[A-Z])", "_", cls).lower()
    if not name or re.search(r"_\d+$", name) or name == own:
        return cls
    return f"{cls} ({name})"


def state_names(layer_names, num_layers, forward):
    """A short name for each of the L+1 states: "0 · base z", "1 · after SplineCoupling",
    ..., the last one "= data x" (data to base: "undo ..." down to "= base z")."""
    first, last = ("base z", "data x") if forward else ("data x", "base z")
    out = [f"0 · {first}"]
    for k in range(1, num_layers + 1):
        layer = layer_names[k - 1] if forward else layer_names[num_layers - k]
        out.append(f"{k} · {'after' if forward else 'undo'} {short_layer_name(layer)}")
    out[-1] += f" = {last}"
    return out
