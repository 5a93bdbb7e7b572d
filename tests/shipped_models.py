"""The shipped models in `saved_models/`, for the tests that open or serve them."""

import json
import pathlib

SHIPPED = pathlib.Path(__file__).resolve().parents[1] / "saved_models"

#: The shipped 2-D NSFs trained with the same recipe as moons, on other 2-D sets
#: (README, "Shipped models").
SAME_RECIPE_AS_MOONS = ("eight_gaussians", "checkerboard", "rings", "pinwheel", "two_spirals")


def recipe(name):
    """What `saved_models/<name>/manifest.json` says the model was built as."""
    manifest = json.loads((SHIPPED / name / "manifest.json").read_text())
    return [manifest[k] for k in ("recipe", "event_dim", "num_layers", "hidden_units", "bins")]
