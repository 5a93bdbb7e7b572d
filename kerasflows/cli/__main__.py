"""`python -m kerasflows.cli ...` runs the `kerasflows` command."""

import sys

from kerasflows.cli import main

sys.exit(main())
