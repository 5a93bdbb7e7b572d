"""`python -m kerasflows ...` runs the `kerasflows` command (`kerasflows_launch.main`).

Python imports the package, and with it TensorFlow, before this module runs:
TensorFlow's first start-up lines are written before the launcher's log
filter starts, and a Ctrl-C during that import ends with Python's traceback.
The `kerasflows` script has neither.
"""

from kerasflows_launch import main

main()
