"""kerasflows: normalizing flows for Keras 3 on the TensorFlow backend."""

from kerasflows import datasets, layers, testing
from kerasflows.flow import Flow
from kerasflows.loading import load
from kerasflows import targets, variational
from kerasflows.variational import VariationalFlow, fit_target

__version__ = "0.1.0"

__all__ = ["Flow", "load", "datasets", "layers", "testing", "__version__",
           "targets", "variational", "VariationalFlow", "fit_target"]
