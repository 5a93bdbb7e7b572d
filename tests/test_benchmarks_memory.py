"""benchmarks/memory.py: its memory probe and its ratio tables (the jobs themselves
need the peers' environment, .venv-bench, and run from the benchmark)."""

import importlib.util
import os
import sys

import numpy as np
import pytest

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "benchmarks")
sys.path.insert(0, BENCHMARKS)                  # memory.py imports compare.py beside it
_spec = importlib.util.spec_from_file_location("benchmarks_memory",
                                               os.path.join(BENCHMARKS, "memory.py"))
memory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(memory)

MB = 2 ** 20


def test_probe_sees_a_phase_peak_that_is_gone_by_its_end():
    probe = memory.ResidentMemory()
    try:
        probe.phase("start")
        block = np.ones(300 * MB // 8)          # touched: resident, anonymous
        block[::512] += 1.0
        del block
        probe.phase("work")
        probe.phase("after")
    finally:
        probe.close()
    start, work, after = (probe.phases[p] for p in ("start", "work", "after"))
    for kind in ("rss", "anon"):
        assert work["peak"][kind] - start["end"][kind] > 250 * MB, kind
        assert work["end"][kind] - start["end"][kind] < 50 * MB, kind    # freed (mmap)
        assert after["peak"][kind] - start["end"][kind] < 50 * MB, kind  # peaks are per phase
    assert work["peak"]["anon"] <= work["peak"]["rss"]


def _record(key, dataset, import_anon, peak_anon, peak_rss):
    phases = {name: {"peak": {"rss": peak_rss, "anon": peak_anon},
                     "end": {"rss": peak_rss, "anon": peak_anon}} for name in memory.PHASES}
    phases["import"]["end"] = {"rss": import_anon + 100 * MB, "anon": import_anon}
    return {"key": key, "dataset": dataset, "phases": phases,
            "peak": {"rss": peak_rss, "anon": peak_anon}, "kernel_peak_rss": peak_rss}


def test_ratios_are_ours_over_the_lowest_peer_of_the_family():
    results = [_record("kerasflows:maf", "moons", 300 * MB, 500 * MB, 900 * MB),
               _record("zuko:maf", "moons", 150 * MB, 400 * MB, 480 * MB),
               _record("tfp:maf", "moons", 280 * MB, 450 * MB, 850 * MB),
               {"key": "kerasflows:nsf", "dataset": "moons", "error": "exit 1: boom"}]
    rows = memory.ratio_rows(results, ["maf", "nsf"], ["moons"])
    assert len(rows) == 1                       # the failed job has no row
    row = rows[0]
    assert row["peak_rss"]["ratio"] == pytest.approx(900 / 480)
    assert row["peak_rss"]["lowest"] == "zuko:maf"
    assert row["peak_anon"]["ratio"] == pytest.approx(500 / 400)
    assert row["work_anon"]["ratio"] == pytest.approx(200 / 170)     # tfp: 450 - 280
    assert row["work_anon"]["lowest"] == "tfp:maf"
    text = memory.report(results, rows)
    assert "| moons | maf | 900 | 850 | 480 | 1.88 |" in text
    assert "exit 1: boom" in text


def test_median_over_repeats():
    runs = [_record("zuko:maf", "moons", 150 * MB, a * MB, 480 * MB) for a in (400, 960, 410)]
    med = memory.median_record(runs)
    assert med["peak"]["anon"] == 410 * MB
    assert med["phases"]["sampling"]["peak"]["anon"] == 410 * MB
    assert med["repeats"] == 3
    assert runs[0]["peak"]["anon"] == 400 * MB          # the inputs are left as they were
