"""Validation BLEU against wall-clock minutes, drawn from training runs' `log.jsonl`, beside the Marian anchor.

    python -m training.plot_curve runs/multi30k-en-de-tiny/log.jsonl --out benchmarks/time_to_quality.png

Each log line with an `eval_bleu` is a point: the periodic greedy validation BLEU (sacreBLEU, cased, on the
run's `eval_samples` first validation sentences) at the run's elapsed training time (`time_s`, summed over
resumed sessions). The anchor is transformers' MarianMTModel (d256, 3+3, fp32, Seq2SeqTrainer) trained on the
same 2-core CPU: greedy BLEU on the first 300 validation sentences at 10 to 50 minutes
(../shared/data/multi30k/README.md). Needs matplotlib (the `space` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

MARIAN_MINUTES = (10, 20, 30, 40, 50)
MARIAN_BLEU = (18.9, 30.2, 34.5, 34.9, 36.9)
GOAL_BLEU, GOAL_MINUTES = 36.9, 25


def read_curve(log_path: str) -> tuple[list[float], list[float]]:
    """(minutes, BLEU) of every periodic evaluation in a run's log.jsonl."""
    minutes, bleu = [], []
    with open(log_path, encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            if "eval_bleu" in record:
                minutes.append(record["time_s"] / 60)
                bleu.append(record["eval_bleu"])
    if not bleu:
        raise SystemExit(f"plot_curve: {log_path} holds no evaluation (no line with eval_bleu)")
    return minutes, bleu


def minutes_to_reach(minutes: list[float], bleu: list[float], target: float) -> float | None:
    """The first evaluation time at which the curve reached `target` (None: never)."""
    return next((m for m, b in zip(minutes, bleu) if b >= target), None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.plot_curve", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument("logs", nargs="+", help="log.jsonl files of training runs (one curve each)")
    parser.add_argument("--labels", nargs="*", help="a legend label per log (default: the run folder's name)")
    parser.add_argument("--out", required=True, help="the PNG file to write")
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.logs):
        raise SystemExit(f"plot_curve: {len(args.labels)} labels for {len(args.logs)} logs")
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        raise SystemExit(
            "plot_curve: needs matplotlib (pip install matplotlib, or the project's [space] extra)"
        ) from None

    fig = Figure(figsize=(7, 4.2), dpi=120)
    ax = fig.add_subplot()
    ax.plot(MARIAN_MINUTES, MARIAN_BLEU, "s--", color="grey", label="MarianMTModel d256 3+3 fp32 (anchor)")
    for i, path in enumerate(args.logs):
        minutes, bleu = read_curve(path)
        label = args.labels[i] if args.labels else os.path.basename(os.path.dirname(os.path.abspath(path)))
        ax.plot(minutes, bleu, "-", marker=".", label=label)
        reached = minutes_to_reach(minutes, bleu, GOAL_BLEU)
        print(
            f"{label}: best {max(bleu):.2f} BLEU; {GOAL_BLEU} reached "
            + (f"after {reached:.1f} min" if reached is not None else "never")
        )
    ax.axhline(GOAL_BLEU, color="grey", linewidth=0.6)
    ax.axvline(GOAL_MINUTES, color="grey", linewidth=0.6, linestyle=":")
    ax.annotate(
        f"goal: {GOAL_BLEU} within {GOAL_MINUTES} min",
        (GOAL_MINUTES, GOAL_BLEU),
        textcoords="offset points",
        xytext=(4, -12),
        fontsize=8,
        color="dimgrey",
    )
    ax.set_xlabel("wall-clock training minutes (2-core CPU)")
    ax.set_ylabel("greedy BLEU, first 300 val sentences")
    ax.set_ylim(0, None)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
