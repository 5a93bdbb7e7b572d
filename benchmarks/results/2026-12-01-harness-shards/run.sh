#!/bin/bash
# ours only, shards 1 vs 2, alternating, through the shared harness
cd /work/shared/bench
for rep in 1 2; do
  for s in 1 2; do
    KF_SHARDS=$s timeout 1800 /work/main/.venv-bench/bin/python peers.py --plugin /work/main/benchmarks/kerasflows_plugin.py --python /work/main/.venv-bench/bin/python --models kerasflows:maf,kerasflows:realnvp,kerasflows:nsf_coupling,kerasflows:nsf --datasets moons --out /tmp/hab_2d_${s}_${rep}.json --logs /tmp/hab-logs >/dev/null 2>&1
    KF_SHARDS=$s timeout 1800 /work/main/.venv-bench/bin/python peers.py --plugin /work/main/benchmarks/kerasflows_plugin.py --python /work/main/.venv-bench/bin/python --models kerasflows:maf,kerasflows:realnvp --datasets digits --out /tmp/hab_dg_${s}_${rep}.json --logs /tmp/hab-logs >/dev/null 2>&1
  done
done
echo done
