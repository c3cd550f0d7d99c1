"""Where one eager training step's time goes: torch.profiler over the step of a recipe's model size.

    python benchmarks/profile_train_step.py                  # the wu2021 recipe: its size, --max-tokens 8192
    python benchmarks/profile_train_step.py --precision bf16 # as `training.train --bf16` trains
    python benchmarks/profile_train_step.py --precision bf16 --compile   # under torch.compile (inductor)
    python benchmarks/profile_train_step.py --size small --max-tokens 4096 --threads 1 --rows 25

The model and step are the model benchmark's (bench_model.py: this project's model, label-smoothed loss,
clipping, AdamW), fp32 or bf16 autocast (--precision), eager or compiled (--compile: bench_model's
ours-compiled, whose loss is computed unfused, as the training CLI computes it when compiling); the batches are the training CLI's token batches (`training.batching.token_batches`:
Multi30k's real length pairs sorted by length and cut at --max-tokens padded tokens), random ids, a seeded
random choice of them. After two warm-up steps, --steps
steps are timed, then run again under torch.profiler; it prints the step time, the matmul FLOPs per step
(forward x 3, counted as bench_model counts them) over the step time against this machine's matmul rate in the
same precision (MFU), and the operators by their own CPU time, with the matmuls' share. Compiling happens in
the warm-up steps (--warmup, more with --compile: each new batch shape may recompile; with --compile the timed
batches also run once before they are timed) and is reported apart.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import bench_model as bm  # noqa: E402

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")  # and the fused attention kernels


def is_matmul(name: str) -> bool:
    return name in MATMULS or "scaled_dot_product" in name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="wu2021", choices=sorted(bm.SIZES))
    parser.add_argument("--max-tokens", type=int, default=8192, help="padded tokens per batch, at most")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--precision", default="fp32", choices=bm.PRECISIONS)
    parser.add_argument("--compile", action="store_true", help="the step under torch.compile (inductor)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 2, 6 with --compile)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=15, help="operators listed")
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else (6 if args.compile else 2)
    if args.precision == "bf16" and (reason := bm.bf16_skip_reason()):
        raise SystemExit(f"profile_train_step: --precision bf16 refused: {reason}")

    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(args.threads)
    size = bm.SIZES[args.size]
    pairs, _ = bm.pair_lengths()
    from training.batching import token_batches

    grouped = token_batches([max(s, t) for s, t in pairs], args.max_tokens, seed=1)
    g = torch.Generator().manual_seed(1)
    # The timed batches come first in one seeded order, the warm-up batches after them: every precision and
    # --warmup times the same batches.
    chosen = [grouped[i] for i in torch.randperm(len(grouped), generator=g)[: args.steps + warmup].tolist()]
    batches = [bm.make_batch([pairs[i] for i in batch], size["vocab"], g) for batch in chosen]
    timed, warm = batches[: args.steps], batches[args.steps :]
    peer = "ours-compiled" if args.compile else "ours"
    model = bm.BUILDERS[peer](size).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
    step = bm.train_step_fn(peer, model, optimizer, args.precision)
    start = time.perf_counter()
    for batch in warm:
        step(batch)
    if args.compile:  # the timed batches' shapes compiled too: what is timed is the compiled step, not compiling
        for batch in timed:
            step(batch)
    warmup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for batch in timed:
        step(batch)
    seconds = (time.perf_counter() - start) / len(timed)  # without the profiler, whose bookkeeping costs time
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in timed:
            step(batch)
    flops = sum(3 * bm.forward_flops(size, b["B"], b["S"], b["T"]) for b in timed) / len(timed)
    peak = bm.matmul_gflops(args.threads, precision=args.precision)
    tokens = sum(b["real_target_tokens"] for b in timed) / len(timed)
    pairs_per_batch = sum(b["B"] for b in timed) / len(timed)
    print(
        f"{args.size}: token batches of at most {args.max_tokens} padded tokens ({pairs_per_batch:.0f} pairs, "
        f"{tokens:.0f} real target tokens on average), {args.threads} thread(s), {args.precision}, "
        f"{'compiled (inductor)' if args.compile else 'eager'}; {warmup} warm-up steps{' (and the timed ones once)' if args.compile else ''} {warmup_seconds:.1f} s"
    )
    print(
        f"step {seconds:.3f} s {flops / 1e9:.0f} GFLOP per step: {flops / seconds / 1e9:.1f} "
        f"GFLOP/s against a {peak:.0f} GFLOP/s {args.precision} matmul peak, MFU {flops / seconds / 1e9 / peak:.1%}"
    )
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if is_matmul(e.key))
    print(f"matmuls (mm, addmm, bmm, the attention kernels): {matmul / total:.1%} of the profiled CPU time")
    print("\n| operator | matmul | self CPU ms per step | share |\n|---|---|---|---|")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.rows]:
        print(
            f"| {e.key} | {'yes' if is_matmul(e.key) else ''} | {e.self_cpu_time_total / 1000 / len(timed):.1f} | "
            f"{e.self_cpu_time_total / total:.1%} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
