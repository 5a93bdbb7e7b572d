#!/bin/bash
# Seeds 3-9 (and rings RealNVP at seeds 1-2) of the RealNVP and spline cells
# where seed 0 misses the NLL target in the full runs, ours and the family's
# best peer one after the other through the shared harness, with the plugin's
# fixed 100-step graph-to-XLA switch (so each of our jobs is reproducible).
# zuko:nsf and zuko:nsf_coupling are the same model on 2-D data (bit-identical
# NLLs, ../shared/bench/README.md), so zuko:nsf serves both spline families.
# Seeds 1-2 of the other cells are in ../2026-11-30-seed-spread/; seed 0 is
# the full run ../2026-12-01-session23-full.json. `table.py` makes the
# table of the README beside this script.
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
PY=$ROOT/.venv-bench/bin/python
PLUG=$ROOT/benchmarks/kerasflows_plugin.py
LOGS=${LOGS:-/tmp/kerasflows-seeds-logs}
SEEDS=${SEEDS:-3 4 5 6 7 8 9}
cd "$ROOT/../shared/bench"
for seed in 1 2; do
  [ -f "$HERE/realnvp-rings-$seed.json" ] && continue
  $PY peers.py --plugin $PLUG --python $PY --seed $seed --models kerasflows:realnvp,zuko:realnvp \
      --datasets rings --out $HERE/realnvp-rings-$seed.json --logs $LOGS
done
for seed in $SEEDS; do
  [ -f "$HERE/realnvp-$seed.json" ] || \
  $PY peers.py --plugin $PLUG --python $PY --seed $seed --models kerasflows:realnvp,zuko:realnvp \
      --datasets checkerboard,moons,rings --out $HERE/realnvp-$seed.json --logs $LOGS
  [ -f "$HERE/nsf-$seed.json" ] || \
  $PY peers.py --plugin $PLUG --python $PY --seed $seed \
      --models kerasflows:nsf,kerasflows:nsf_coupling,zuko:nsf \
      --datasets moons,rings --out $HERE/nsf-$seed.json --logs $LOGS
done
python3 "$HERE/table.py"
