"""kerasflows visualizer: a desktop app that shows what a trained flow does, live.

Start it with `kerasflows-viz [MODEL]` or `python -m visualizer [MODEL]`.
Layout: `paths` (finding a model on disk), `backends` (with `backend_base`
and `savedmodel_backend`), `opening` and `compute` (the only TensorFlow
code; no Qt), `geometry` (NumPy helpers shared by both
sides), `worker` (the long-lived compute thread), and the Qt side: `window`,
`views/*`, `items`, `theme`, `headless` (screenshots without a display).
"""

__all__ = []
