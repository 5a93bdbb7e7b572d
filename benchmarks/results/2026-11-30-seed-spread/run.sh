#!/bin/bash
# Seeds 1 and 2 of the cells where seed 0 (2026-11-30-directions) missed the NLL
# target, ours and the family's best peer (zuko), through the shared harness.
# zuko:nsf and zuko:nsf_coupling are the same model on 2-D data (bit-identical
# NLLs, ../shared/bench/README.md), so zuko:nsf serves both spline families.
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
PY=$ROOT/.venv-bench/bin/python
PLUG=$ROOT/benchmarks/kerasflows_plugin.py
LOGS=${LOGS:-/tmp/kerasflows-seed-spread-logs}
cd "$ROOT/../shared/bench"
for seed in 1 2; do
  $PY peers.py --plugin $PLUG --python $PY --seed $seed --models kerasflows:maf,zuko:maf \
      --datasets checkerboard,moons,pinwheel --out $HERE/maf-$seed.json --logs $LOGS
  $PY peers.py --plugin $PLUG --python $PY --seed $seed --models kerasflows:realnvp,zuko:realnvp \
      --datasets checkerboard,moons --out $HERE/realnvp-$seed.json --logs $LOGS
  $PY peers.py --plugin $PLUG --python $PY --seed $seed \
      --models kerasflows:nsf,kerasflows:nsf_coupling,zuko:nsf \
      --datasets moons,rings --out $HERE/nsf-$seed.json --logs $LOGS
done
python3 "$HERE/table.py"
