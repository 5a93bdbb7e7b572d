"""kerasflows: normalizing flows for Keras 3 on the TensorFlow backend."""

from kerasflows import (callbacks, datasets, dequantization, distributed, export, graph_calls, inference,
                        layers, marginals, models, pictures, recipes, targets, testing, training,
                        variational)
from kerasflows.flow import Flow
from kerasflows.inference import tabulate
from kerasflows.loading import load
from kerasflows.variational import VariationalFlow, fit_target

__version__ = "0.2.0"

__all__ = ["Flow", "load", "tabulate", "VariationalFlow", "fit_target", "callbacks", "datasets",
           "dequantization", "distributed", "export", "graph_calls", "inference", "layers", "marginals",
           "models", "pictures",
           "recipes", "targets", "testing", "training", "variational", "__version__"]
