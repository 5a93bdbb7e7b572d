"""benchmarks/compare.py's own exit status and interpreter path, with a stand-in for
the shared harness's peers.py (the real jobs need the peers' environment)."""

import importlib.util
import json
import os
import sys

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "benchmarks")
_spec = importlib.util.spec_from_file_location("benchmarks_compare",
                                               os.path.join(BENCHMARKS, "compare.py"))
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)

FAKE_PEERS = '''
import json, sys
def markdown(results, meta):
    return ""
if __name__ == "__main__":
    args = sys.argv[1:]
    out = args[args.index("--out") + 1]
    json.dump({"meta": {"date": "today", "python": sys.executable}, "results": [
        {"key": "kerasflows:maf", "dataset": "moons", "status": STATUS,
         "test_nll": 2.0}]}, open(out, "w"))
'''


def _bench(folder, status):
    folder.mkdir()
    (folder / "peers.py").write_text(FAKE_PEERS.replace("STATUS", repr(status)))
    return str(folder)


def test_compare_fails_when_a_job_failed_and_takes_a_relative_interpreter(tmp_path,
                                                                           monkeypatch, capsys):
    """Every job failing (an import error in the jobs' environment) exited 0 with empty
    tables; `--python .venv/bin/python` was looked for inside --bench."""
    monkeypatch.chdir(os.path.dirname(sys.executable))
    run = lambda bench, name: compare.main([
        "--bench", bench, "--python", os.path.join(".", os.path.basename(sys.executable)),
        "--families", "maf", "--datasets", "moons", "--out", str(tmp_path / name)])
    assert run(_bench(tmp_path / "failing", "error: ModuleNotFoundError: scipy"), "f.json") == 1
    said = capsys.readouterr().err
    assert ("compare.py: error: 1 of 1 jobs failed (the first: kerasflows:maf on moons: "
            "error: ModuleNotFoundError: scipy)") in said
    assert run(_bench(tmp_path / "fine", "ok"), "ok.json") == 0
    # (a peer's divergence is a result, not a failure)
    assert run(_bench(tmp_path / "diverged", "diverged at step 3"), "d.json") == 0
    assert json.loads((tmp_path / "ok.json").read_text())["results"][0]["status"] == "ok"
