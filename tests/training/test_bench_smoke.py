"""The model benchmark's quick mode runs and reports every key (the numbers themselves mean nothing here)."""

import json
import os
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import bench_model  # noqa: E402


def test_quick_mode_reports_every_peer_task_and_target(tmp_path, capsys):
    out = tmp_path / "bench.json"
    # In this process (no subprocess imports): the smoke test of CI runs the real subprocess mode.
    assert bench_model.main(["--quick", "--in-process", "--threads", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert set(report) == {"meta", "results", "ratios", "targets"}
    for key in (
        "matmul_gflops",
        "matmul_gflops_bf16",
        "bf16_skipped",
        "precisions",
        "threads",
        "lengths",
        "sizes",
        "profile",
        "command",
    ):
        assert key in report["meta"]
    skipped = bench_model.bf16_skip_reason()
    assert report["meta"]["bf16_skipped"] == skipped
    rows = {(r["peer"], r["task"], r["precision"]): r for r in report["results"] if r["task"] != "pipeline"}
    expected = {(p, t, "fp32") for p in bench_model.PEERS for t in bench_model.TASKS}
    if skipped is None:  # bf16 training rows beside fp32 (generation stays fp32), with their own matmul rate
        expected |= {(p, "train", "bf16") for p in bench_model.PEERS}
        assert report["meta"]["matmul_gflops_bf16"] > 0
        assert "| tiny | train | bf16 | ours |" in printed
    else:  # no bf16 rows and no error: one line says why
        assert report["meta"]["matmul_gflops_bf16"] is None
        assert f"bf16 cases skipped: {skipped}." in printed
    assert set(rows) == expected
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
    bf16_targets = ("small_train_bf16_vs_fp32", "small_train_bf16_vs_marian_bf16")
    for name in bf16_targets:
        assert (report["targets"][name]["value"] is None) == (skipped is not None)
    assert "| target | value | goal | met |" in printed
    for name in bf16_targets:
        assert f"| {name} |" in printed


def test_quick_mode_without_bf16_skips_it_with_the_reason(tmp_path, capsys, monkeypatch):
    """A machine without native bf16: the bf16 cases are skipped, not an error, and the table says why."""
    monkeypatch.setattr(bench_model, "bf16_skip_reason", lambda: "this CPU has no AVX512-BF16 or AMX instructions")
    out = tmp_path / "bench.json"
    assert (
        bench_model.main(
            ["--quick", "--in-process", "--threads", "1", "--peers", "ours", "--tasks", "train", "--json", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert [(r["peer"], r["task"], r["precision"]) for r in report["results"]] == [("ours", "train", "fp32")]
    assert report["meta"]["bf16_skipped"] == "this CPU has no AVX512-BF16 or AMX instructions"
    assert report["meta"]["matmul_gflops_bf16"] is None and report["meta"]["precisions"] == ["fp32"]
    assert "bf16 cases skipped: this CPU has no AVX512-BF16 or AMX instructions." in printed
    assert report["targets"]["small_train_bf16_vs_fp32"]["met"] is None


def test_bf16_forward_runs_under_autocast_and_fp32_does_not():
    import torch

    a = torch.randn(4, 4)
    with bench_model.forward_context("bf16"):
        assert (a @ a).dtype == torch.bfloat16
    with bench_model.forward_context("fp32"):
        assert (a @ a).dtype == torch.float32


def test_engines_benchmark_compares_every_engine_with_torch(tmp_path, capsys):
    """The engines benchmark on a few real sentences: each engine's row, BLEU and agreement with PyTorch; float32
    CTranslate2 translates exactly as generate() does."""
    pytest.importorskip("ctranslate2", reason="CTranslate2 is in the deploy extra: pip install -e '.[deploy]'")
    import bench_engines

    out = tmp_path / "engines.json"
    assert (
        bench_engines.main(
            [
                "--engines",
                "ctranslate2",
                "--limit",
                "6",
                "--threads",
                "1",
                "--latency-sentences",
                "2",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    rows = {(r["engine"], r["decoding"]): r for r in report["results"]}
    assert set(rows) == {(e, d) for e in ("torch", "ctranslate2") for d in ("greedy", "beam5")}
    for row in rows.values():
        assert row["sentences_per_s"] > 0 and row["target_tokens"] > 0 and 0 <= row["bleu"] <= 100
    assert (
        rows["ctranslate2", "greedy"]["same_as_torch"] == "6/6"
        and rows["ctranslate2", "beam5"]["same_as_torch"] == "6/6"
    )
    assert "| CTranslate2 float32 | beam5 | 1 |" in capsys.readouterr().out
