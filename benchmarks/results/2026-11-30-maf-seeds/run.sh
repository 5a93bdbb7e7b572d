#!/bin/bash
# Seeds 3-9 of the three MAF cells behind zuko at seed 0, ours and zuko:maf one
# after the other, through the shared harness (seeds 0-2 are in
# ../2026-11-30-philox.json and ../2026-11-30-seed-spread/). `table.py` makes
# the table of the README beside this script from all ten seeds.
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
PY=$ROOT/.venv-bench/bin/python
PLUG=$ROOT/benchmarks/kerasflows_plugin.py
LOGS=${LOGS:-/tmp/kerasflows-maf-seeds-logs}
SEEDS=${SEEDS:-3 4 5 6 7 8 9}
cd "$ROOT/../shared/bench"
for seed in $SEEDS; do
  $PY peers.py --plugin $PLUG --python $PY --seed $seed --models kerasflows:maf,zuko:maf \
      --datasets checkerboard,moons,pinwheel --out $HERE/maf-$seed.json --logs $LOGS
done
