"""The model benchmark's quick mode runs and reports every key (the numbers themselves mean nothing here)."""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import bench_model  # noqa: E402


def test_quick_mode_reports_every_peer_task_and_target(tmp_path, capsys):
    out = tmp_path / "bench.json"
    # In this process (no subprocess imports): the smoke test of CI runs the real subprocess mode.
    assert bench_model.main(["--quick", "--in-process", "--threads", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"meta", "results", "ratios", "targets"}
    for key in ("matmul_gflops", "threads", "lengths", "sizes", "profile", "command"):
        assert key in report["meta"]
    rows = {(r["peer"], r["task"]): r for r in report["results"] if r["task"] != "pipeline"}
    assert set(rows) == {(p, t) for p in bench_model.PEERS for t in bench_model.TASKS}
    for r in rows.values():
        for key in ("tokens_per_s", "seconds_median", "seconds_runs", "mfu", "peak_rss_mib", "gflops_per_s"):
            assert key in r, key
        assert r["tokens_per_s"] > 0 and 0 < r["mfu"] < 5
    pipeline = next(r for r in report["results"] if r["task"] == "pipeline")
    for side in ("grouped", "random"):
        assert pipeline[side]["tokens_per_s"] > 0
    # Length grouping really groups: far less padding than random batches.
    assert pipeline["grouped"]["target_padding"] < pipeline["random"]["target_padding"]
    assert set(report["targets"]) == set(bench_model.TARGETS)
    assert "| target | value | goal | met |" in capsys.readouterr().out
