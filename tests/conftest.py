"""Shared by every test: no test writes to the user's cache folder.

The visualizer keeps XLA's compiled code in ~/.cache/kerasflows/
(`visualizer.compile_cache`); the tests, and the programs they start, run
with that cache off unless a test points it at a temporary folder.
"""

import os

os.environ["KERASFLOWS_VIZ_COMPILE_CACHE"] = "off"
