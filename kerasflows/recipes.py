"""Recipe names for the command line: `build(recipe, event_dim, ...)` -> a `Flow`.

`RECIPES` maps each name to a `kerasflows.models` constructor:
`realnvp`, `nice`, `maf`, `iaf`, `nsf` (spline coupling), `nsf_ar`
(autoregressive splines) and `glow`. `recommended(dataset)` gives the
settings the shipped models in `saved_models/` were trained with.
`DIRECTION_SETTINGS` names the layer setting that `build(...,
direction=...)` sets for each recipe (`affine_direction` or
`spline_direction`). `defaults(recipe)` gives what `build` uses for each of
`bins`, `bound`, `direction` and `mask` left None.

Example:

```python
flow = kerasflows.recipes.build("nsf", event_dim=2, num_layers=6, bins=16)
settings = kerasflows.recipes.recommended("moons")
```
"""

import copy
import inspect

from kerasflows import models
from kerasflows.layers.checks import check_positive_int
from kerasflows.layers.nets import check_hidden_units

__all__ = ["RECIPES", "SPLINE_RECIPES", "MASK_RECIPES", "COUPLING_RECIPES",
           "ONE_DIMENSION_RECIPES", "DIRECTION_SETTINGS", "build", "defaults", "recommended",
           "RECOMMENDED"]

RECIPES = {
    "realnvp": (models.RealNVP, {}),
    "nice": (models.NICE, {}),
    "maf": (models.MAF, {}),
    "iaf": (models.IAF, {}),
    "nsf": (models.NSF, {}),
    "nsf_ar": (models.NSF, {"autoregressive": True}),
    "glow": (models.Glow, {}),
}
SPLINE_RECIPES = ("nsf", "nsf_ar")
#: The recipes whose coupling layers take `mask` ("halves" or "checkerboard").
MASK_RECIPES = ("realnvp", "nice", "nsf")
#: The recipes of coupling layers, which split the dimensions: event_dim >= 2 only.
COUPLING_RECIPES = ("realnvp", "nice", "nsf", "glow")
#: The others, which take event_dim 1.
ONE_DIMENSION_RECIPES = tuple(r for r in RECIPES if r not in COUPLING_RECIPES)
#: The layer setting `build(..., direction=...)` sets, per recipe that has one.
DIRECTION_SETTINGS = {"realnvp": "affine_direction", "maf": "affine_direction",
                      "iaf": "affine_direction", "glow": "affine_direction",
                      "nsf": "spline_direction", "nsf_ar": "spline_direction"}


def build(recipe, event_dim, num_layers=5, hidden_units=(64, 64), bins=None, bound=None,
          direction=None, **kwargs):
    """Builds the flow named `recipe`.

    Args:
        recipe: a key of `RECIPES`.
        event_dim, num_layers: passed to the model constructor.
        hidden_units: passed to the model constructor: a sequence of positive
            ints, or one int for a single hidden layer.
        bins, bound: spline settings, for `nsf` and `nsf_ar` only (None keeps
            the constructor's defaults).
        direction: `"inverse"` or `"forward"`: the layers' `affine_direction`
            or `spline_direction` (see `DIRECTION_SETTINGS`); None keeps the
            layers' default, `"inverse"`.
        **kwargs: passed on (`context_dim`, `base`, `name`, `dtype`).

    Raises:
        ValueError: an unknown recipe (the message lists the known ones),
            `hidden_units` that are not positive ints (a string, None),
            spline settings for a recipe without splines, a direction for
            a recipe without one (`nice`), or `event_dim=1` for a coupling recipe
            (`COUPLING_RECIPES`; the message names the ones that take it).
    """
    if not isinstance(recipe, str) or recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r}; known recipes: {', '.join(RECIPES)}.")
    # (event_dim=True or 1.0 was called event_dim=1, and a recipe for one dimension advised)
    event_dim = check_positive_int("event_dim", event_dim)
    if recipe in COUPLING_RECIPES and event_dim == 1:
        others = [repr(r) for r in ONE_DIMENSION_RECIPES]
        raise ValueError(f"Recipe {recipe!r} needs event_dim >= 2: its coupling layers split "
                         "the dimensions in two, transforming one part given the other. "
                         f"Received: event_dim=1. For one dimension, use recipe "
                         f"{', '.join(others[:-1])} or {others[-1]}.")
    constructor, fixed = RECIPES[recipe]
    spline = {k: v for k, v in (("bins", bins), ("bound", bound)) if v is not None}
    if spline and recipe not in SPLINE_RECIPES:
        raise ValueError(f"bins/bound apply to spline recipes {SPLINE_RECIPES} only. "
                         f"Received: recipe={recipe!r}, {spline}")
    if direction is not None:
        if recipe not in DIRECTION_SETTINGS:
            raise ValueError(f"direction applies to recipes {tuple(DIRECTION_SETTINGS)} only. "
                             f"Received: recipe={recipe!r}, direction={direction!r}")
        kwargs[DIRECTION_SETTINGS[recipe]] = direction
    return constructor(event_dim, num_layers=num_layers,
                       hidden_units=check_hidden_units(hidden_units), **fixed, **spline, **kwargs)


def defaults(recipe):
    """What `build(recipe, ...)` uses for each setting it takes that is left None:
    `bins` and `bound` (spline recipes, the constructor's defaults), `mask`
    (`MASK_RECIPES`) and `direction` (`DIRECTION_SETTINGS`: the layers' default,
    `"inverse"`), as a dict holding only the settings `recipe` takes."""
    if not isinstance(recipe, str) or recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r}; known recipes: {', '.join(RECIPES)}.")
    constructor, fixed = RECIPES[recipe]
    parameters = inspect.signature(constructor).parameters
    taken = {"bins": recipe in SPLINE_RECIPES, "bound": recipe in SPLINE_RECIPES,
             "mask": recipe in MASK_RECIPES}
    found = {name: parameters[name].default for name, takes in taken.items()
             if takes and name not in fixed}
    if recipe in DIRECTION_SETTINGS:
        found["direction"] = "inverse"
    return found


# The shipped models apply the spline from data to base (`spline_direction="inverse"`,
# the layers' default, stated so that a later change of default keeps the rebuilds).
# Their data are on a unit scale and trained as they are (`standardize`: False, which
# `kerasflows train` must be told for a data file, standardized by default).
_SPLINE_2D = {"recipe": "nsf", "num_layers": 6, "hidden_units": [128, 128], "bins": 16,
              "bound": 5.0, "direction": "inverse", "epochs": 100, "batch_size": 512,
              "lr": 2e-3, "lr_decay": "cosine", "standardize": False}

_DIGITS = {"recipe": "nsf", "num_layers": 5, "hidden_units": [64, 64], "bins": 8,
           "bound": 5.0, "direction": "inverse", "epochs": 15, "batch_size": 128,
           "lr": 1e-3, "lr_decay": "cosine", "standardize": False}

#: Training settings of the shipped models (CLI flag names without dashes).
RECOMMENDED = {
    "moons": _SPLINE_2D,
    "eight_gaussians": _SPLINE_2D,
    "checkerboard": _SPLINE_2D,
    "rings": _SPLINE_2D,
    "pinwheel": _SPLINE_2D,
    "two_spirals": _SPLINE_2D,
    # four columns (moons and two that depend on it): the same spline flow, the
    # couplings splitting them in halves; 200,000 draws (`build_saved_models.ROWS`)
    "moons4d": {**_SPLINE_2D, "epochs": 30},
    # heavy tails: the 2-D spline flow over a Student-t base (standardized, as
    # `kerasflows train` does heavy_tails; benchmarks/heavy_tails.py)
    "heavy_tails": {**_SPLINE_2D, "base": "student_t", "standardize": True},
    "digits": _DIGITS,
    # conditional (kerasflows.datasets.load_conditional): p(x | radius)
    "ring_radius": {**_SPLINE_2D, "epochs": 60},
    # p(image | label): the label through a learned embedding (`train --context-classes`)
    "digits_label": {**_DIGITS, "epochs": 30, "context_classes": 10},
}


def recommended(dataset):
    """The recommended training settings for `dataset` (a fresh dict).

    Raises:
        ValueError: no recommendation for that name.
    """
    if dataset not in RECOMMENDED:
        raise ValueError(f"No recommended recipe for {dataset!r}; available for: "
                         f"{', '.join(RECOMMENDED)}.")
    return copy.deepcopy(RECOMMENDED[dataset])
