"""A head atlas of a model folder: every head's role over a split, and BLEU as heads are pruned.

    python -m training.head_atlas space/model [--data ../shared/data/multi30k] [--split val]
                                  [--max-sentences N] [--batch-size B]

Writes into the model folder:
    head_atlas.json          `pruning` (BLEU curves), `heads` (importance, pruning order, roles, shares), metadata
    head_atlas_pruning.png   BLEU against the share of heads pruned: encoder, decoder, cross, all
    head_atlas_roles.png     one grid per head family: importance (colour), rank and roles

Importance is Michel et al. (NeurIPS 2019)'s gradient importance E_x |dL(x)/d xi_h|, teacher-forced on the
references and normalised per layer (l2), as they prune; roles follow Voita et al. (ACL 2019), measured by
`encdec_lens.atlas` (positional, rare-word with training-set token counts of both sides, sink, and the
cross-attention diagonal). BLEU: greedy decoding, the Multi30k convention (lowercased, punctuation-normalised,
Moses-tokenised output against the official tokenised references). Needs matplotlib (the `space` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .space_modules import use_space_modules

PROG = "python -m training.head_atlas"
GROUPS = ("encoder", "decoder", "cross", "all")
GROUP_TITLES = {
    "encoder": "encoder self-attention",
    "decoder": "decoder self-attention",
    "cross": "cross-attention",
    "all": "all heads",
}
ROLE_TAGS = {"positional": "pos", "rare-word": "rare", "sink": "sink", "diagonal": "diag"}


def _lens():
    """encdec_lens lives in space/ (the Space deploys alone); importable from a checkout without installing."""
    use_space_modules()
    from encdec_lens import atlas, gradient_importance, make_example

    return atlas, gradient_importance, make_example


def analysis_parser(prog: str, doc: str, written: str) -> argparse.ArgumentParser:
    """The command line of an analysis written into a model folder (this atlas, circuit_atlas's circuits): `prog`,
    the first paragraph of its module docstring `doc`, and the model folder, into which `written` goes."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=doc.split("\n\n")[0],
        allow_abbrev=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model", help=f"model folder (one with config.json); the {written} is written into it")
    return parser


def parse_args(argv=None):
    parser = analysis_parser(PROG, __doc__, "atlas")
    parser.add_argument(
        "--data",
        default="../shared/data/multi30k",
        help="a local folder of {split}.{lang}.gz files (the Multi30k layout)",
    )
    parser.add_argument(
        "--split",
        default="val",
        help="the split the atlas is measured on (choices about the model are made on val only)",
    )
    parser.add_argument("--train-split", default="train", help="the split whose token counts define 'rare'")
    parser.add_argument("--source-lang", default="en", help="source language code, as in the file names")
    parser.add_argument("--target-lang", default="de", help="target language code, as in the file names")
    parser.add_argument("--max-sentences", type=int, default=0, help="only the first N sentences (0: all)")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per forward pass and per greedy batch")
    parser.add_argument("--steps", type=int, default=10, help="pruning steps: each at most 1/steps of a group")
    args = parser.parse_args(argv)
    if args.max_sentences < 0:
        parser.error("--max-sentences must be 0 (all) or positive")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


def check_model_folder(path: str, prog: str = PROG) -> str:
    """The folder, or SystemExit naming what is wrong (before anything heavy is imported); `prog` names the
    command in the message (the atlas commands write into the folder)."""
    path = os.path.expanduser(path)
    if not os.path.isdir(path):
        raise SystemExit(
            f"{prog}: model folder {path!r} does not exist ({os.path.abspath(path)}); pass a folder "
            "written by training.train or save_pretrained, e.g. space/model."
        )
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise SystemExit(
            f"{prog}: {path!r} is not a model folder (no config.json in it); pass a folder written by "
            "training.train or save_pretrained, e.g. space/model."
        )
    return path


def load_data(args):
    """(sources, raw references, tokenised references, where those came from, train texts) or SystemExit."""
    from .data import DataError, load_local
    from .metrics import tokenized_references

    if not os.path.isdir(args.data):
        raise SystemExit(
            f"{PROG}: data folder {args.data!r} does not exist ({os.path.abspath(args.data)}); pass "
            "--data with a folder of the Multi30k layout ({split}.{lang}.gz, one sentence per line)."
        )
    try:
        corpus = load_local(args.data, args.split, args.source_lang, args.target_lang)
        train = load_local(args.data, args.train_split, args.source_lang, args.target_lang)
    except DataError as e:
        raise SystemExit(f"{PROG}: {e}") from None
    tok_refs, tok_source = tokenized_references(args.data, args.split, args.target_lang, corpus.target)
    n = args.max_sentences or len(corpus)
    return corpus.source[:n], corpus.target[:n], tok_refs[:n], tok_source, train.source + train.target


def bleu_function(lang: str):
    """BLEU of hypotheses against tokenised references, in the Multi30k convention (training.metrics)."""
    import sacrebleu

    from .metrics import moses_lc_tokenize

    metric = sacrebleu.metrics.BLEU(tokenize="none", force=True)

    def bleu(hypotheses, tokenized_refs):
        return round(metric.corpus_score(moses_lc_tokenize(hypotheses, lang), [tokenized_refs]).score, 2)

    return bleu


def compute(model, tokenizer, args, data) -> dict:
    """The atlas dict, with the seconds each part took."""
    atlas, gradient_importance, make_example = _lens()
    sources, references, tok_refs, tok_source, train_texts = data
    seconds = {}
    start = time.perf_counter()
    counts = atlas.count_tokens(tokenizer, train_texts)
    examples = [make_example(model, tokenizer, s, r) for s, r in zip(sources, references)]
    raw = gradient_importance(model, examples, batch_size=min(args.batch_size, 32))
    importance = atlas.normalize_per_layer(raw)
    seconds["importance"] = round(time.perf_counter() - start, 1)

    start = time.perf_counter()
    roles = atlas.head_roles(model, tokenizer, list(zip(sources, references)), counts, batch_size=args.batch_size)
    seconds["roles"] = round(time.perf_counter() - start, 1)

    start = time.perf_counter()
    pruning = atlas.pruning_curves(
        model,
        tokenizer,
        sources,
        tok_refs,
        importance,
        bleu_function(args.target_lang),
        steps=args.steps,
        batch_size=args.batch_size,
    )
    seconds["pruning"] = round(time.perf_counter() - start, 1)
    max_length = model.generation_config.max_length
    return atlas.head_atlas(
        model,
        roles,
        importance,
        pruning,
        raw_importance=raw,
        model=args.model,
        split=args.split,
        sentences=len(sources),
        decoding=f"greedy (num_beams=1, max_length={max_length}), heads switched off by zeroing their output",
        metric=(
            "sacreBLEU (tokenize=none) of the lowercased, punctuation-normalised, Moses-tokenised output "
            f"(sacremoses) against {tok_source}: the Multi30k convention of eval_results.json's bleu_lc_tok"
        ),
        importance=(
            "Michel et al. 2019: E_x |dL(x)/d xi_h| over the split, L the summed NLL of the reference "
            "(teacher-forced); `importance` is divided by its layer's l2 norm (their section 4.1), "
            "`importance_raw` is not; pruning goes least important first by `importance`"
        ),
        roles=(
            "Voita et al. 2019, teacher-forced on the references; shares are over query positions (the "
            "decoder's first, which sees only itself, not counted); rare-word uses token counts of the "
            f"{args.train_split} split's both sides ({sum(counts.values())} tokens); syntactic roles are not "
            "measured"
        ),
        seconds=seconds,
    )


# --- figures ------------------------------------------------------------------------------------------------


def plot_pruning(result: dict, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for group, marker in zip(GROUPS, "osD^"):
        points = result["pruning"][group]
        ax.plot(
            [100 * p["fraction"] for p in points],
            [p["bleu"] for p in points],
            marker=marker,
            markersize=4,
            label=f"{GROUP_TITLES[group]} ({points[-1]['heads_pruned']} heads)",
        )
    ax.set_xlabel("heads pruned, least important first (% of the group)")
    ax.set_ylabel("BLEU (greedy, lowercased tokenised)")
    ax.set_title(
        f"Pruning heads by importance (Michel et al. 2019): {result['split']}, {result['sentences']} sentences",
        fontsize=10,
    )
    ax.set_xlim(0, 100)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)


def plot_roles(result: dict, path: str) -> None:
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    heads = result["heads"]
    families = [f for f in ("encoder", "decoder", "cross") if any(h["family"] == f for h in heads)]
    n_layers = max(h["layer"] for h in heads) + 1
    n_heads = max(h["head"] for h in heads) + 1
    vmax = max(h["importance"] for h in heads) or 1.0
    fig = Figure(figsize=(3.6 * len(families) + 1, 0.9 * n_layers + 1.0), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    for i, family in enumerate(families):
        ax = fig.add_subplot(1, len(families), i + 1)
        grid = np.full((n_layers, n_heads), np.nan)
        for h in heads:
            if h["family"] == family:
                grid[h["layer"], h["head"]] = h["importance"]
        image = ax.imshow(grid, cmap="Blues", vmin=0, vmax=vmax)
        for h in heads:
            if h["family"] != family:
                continue
            tags = [
                ROLE_TAGS[r] + (f" {h['shares']['positional_offset']:+d}" if r == "positional" else "")
                for r in h["roles"]
            ]
            text = f"#{h['importance_rank']}\n" + ("\n".join(tags) if tags else "–")
            dark = h["importance"] > 0.6 * vmax
            ax.text(
                h["head"], h["layer"], text, ha="center", va="center", fontsize=7, color="white" if dark else "black"
            )
        ax.set_xticks(range(n_heads), [f"H{j + 1}" for j in range(n_heads)])
        ax.set_yticks(range(n_layers), [f"L{j + 1}" for j in range(n_layers)])
        ax.set_title(GROUP_TITLES[family], fontsize=10)
    fig.colorbar(image, ax=fig.axes, shrink=0.8, label="importance (per-layer normalised)")
    fig.suptitle(
        "Head atlas: importance rank (#1 most important) and roles (pos ±k: positional at offset k; rare; sink; diag)",
        fontsize=9,
    )
    fig.savefig(path)


def main(argv=None) -> int:
    args = parse_args(argv)
    folder = check_model_folder(args.model)
    data = load_data(args)
    from .evaluate import load

    model, tokenizer = load(folder)
    start = time.perf_counter()
    result = compute(model, tokenizer, args, data)
    result["seconds"]["total"] = round(time.perf_counter() - start, 1)
    json_path = os.path.join(folder, "head_atlas.json")
    with open(json_path, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    plot_pruning(result, os.path.join(folder, "head_atlas_pruning.png"))
    plot_roles(result, os.path.join(folder, "head_atlas_roles.png"))
    unpruned = result["pruning"]["all"][0]["bleu"]
    print(
        f"{json_path}: {result['sentences']} sentences, unpruned greedy BLEU {unpruned}, "
        f"{result['seconds']['total']} s ({result['seconds']})"
    )
    for group in GROUPS:
        print(f"  {group:8s} " + " ".join(f"{100 * p['fraction']:.0f}%:{p['bleu']}" for p in result["pruning"][group]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
