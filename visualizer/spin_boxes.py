"""Spin boxes for values in the data's own units (the context panel's and the
projection panel's): wide and precise enough for the value they open at."""

import numpy as np

__all__ = ["SPIN_LIMIT", "fit_spin_box", "step_decimals", "set_exact", "exact_value"]

#: A value spin box takes values within +- this (or out to the value it is fitted to,
#: if that is further), shown with 3 decimals (or up to 6, as many as that value needs).
SPIN_LIMIT, SPIN_DECIMALS, SPIN_MAX_DECIMALS = 1e4, 3, 6


def decimals(value, least=SPIN_DECIMALS):
    """The decimals a spin box needs to show `value` as the float32 it is (`least`
    to 6)."""
    for d in range(least, SPIN_MAX_DECIMALS):
        if np.float32(round(float(value), d)) == np.float32(value):
            return d
    return SPIN_MAX_DECIMALS


def step_decimals(low, step):
    """The fewest decimals (0 to 6) that show every value `low + k * step` of a stepped
    coordinate as the float32 it is: those of its start and of its step (a label from
    0 in steps of 1 needs none; 0.5, 1.5, ... needs one). A step below 1e-6 takes the
    decimals that tell its steps apart (1e-7: 7), past 6."""
    apart = int(np.ceil(-np.log10(step))) if 0 < step < 1e-6 else 0
    return max(decimals(low, least=0), decimals(step, least=0), apart)


def fit_spin_box(spin, value):
    """Widens `spin` (a `QDoubleSpinBox`; its range, at least +-`SPIN_LIMIT`, and its
    decimals) so it holds `value` (an income of 55000, a rate of 0.00042) unchanged.
    Does not set the value."""
    value = float(value)
    spin.setDecimals(max(spin.decimals(), decimals(value)))
    spin.setRange(min(spin.minimum(), -SPIN_LIMIT, value),
                  max(spin.maximum(), SPIN_LIMIT, value))


def set_exact(spin, value):
    """Sets `spin` (fitted to it) to `value` without a signal, remembering the
    float32 `value` itself for `exact_value` while the box shows it (a held value
    of 5e-7 shows as 0.000001 at 6 decimals, and is held at 5e-7). Returns whether
    that value changed."""
    before = exact_value(spin)
    fit_spin_box(spin, value)
    blocked = spin.blockSignals(True)
    spin.setValue(float(value))
    spin.blockSignals(blocked)
    spin.exact = (float(np.float32(value)), spin.value())
    return exact_value(spin) != before


def exact_value(spin):
    """The value `set_exact` gave `spin`, unless it has moved since: then its own."""
    exact, shown = getattr(spin, "exact", (None, None))
    return exact if exact is not None and spin.value() == shown else spin.value()
