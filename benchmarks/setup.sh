#!/usr/bin/env bash
# Creates .venv-bench/: kerasflows (editable) plus the peers' libraries
# (torch, zuko) and scikit-learn (class_embedding.py's classifier), kept
# apart from the project's own environment. torch is pinned to the version
# the peer results were measured with.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-bench
.venv-bench/bin/pip install -e . torch==2.13.0 zuko==1.6.0 scikit-learn
