"""A circuit atlas entry of a model folder: the edges that carry one contrast over a set of sentence pairs.

    python -m training.circuit_atlas space/model --swap man:woman=Mann:Frau [--swap boy:girl=Junge:Mädchen]
                                     [--data ../shared/data/multi30k] [--split val] [--max-pairs 40]
    python -m training.circuit_atlas space/model --pairs pairs.tsv [--name NAME]
        [--mean-ablation [--references 50]] [--method eap-ig] [--steps 5] [--ks 0 5 10 ...] [--threshold 0.8]
        [--overwrite]

Pairs (a clean and a corrupted source of the same token length, a target and a contrast token):
    --pairs FILE.tsv    one pair a line: clean <TAB> corrupted [<TAB> target <TAB> contrast] (an optional header
                        line starting with "clean"; empty lines are skipped)
    --swap A:B          every sentence of the split with the word A (whole word, any case of its first letter)
                        gives a pair with A replaced by B; sentences where that changes the token length are
                        skipped. --swap A:B=X:Y names the target-side words too.
Target and contrast: given words X:Y (the first token piece where their tokenizations differ, at the position
where the model's translation of the clean source has X; pairs whose translation has no X are skipped), or
else the first token where the model's greedy translations of the two sources differ (its clean and
corrupted tokens, at that position). The metric is logit[target] - logit[contrast] there, teacher-forced on
the clean source's greedy translation.

Mean ablation (--mean-ablation): each node's corrupted value is its mean output over the first --references
sentences of --split (section 6 of `encdec_lens.circuit_discovery`); the corrupted source, if any, only chooses
the target and contrast (when no target words are given), so it may differ in token length. A --pairs line is
then clean <TAB> corrupted, clean <TAB> target <TAB> contrast (no corrupted column) or all four.

Scores: EAP or EAP-IG (`encdec_lens.circuit_discovery`) on every pair, averaged. Faithfulness curves of the
top-k and of the greedy connected circuits by real edge-level interventions on every pair, normalised on the
means: (mean M(circuit) - mean M(corrupted)) / (mean M(clean) - mean M(corrupted)).

Writes into the model folder (never over an existing file without --overwrite; each file written whole or
not at all):
    circuits/NAME.json      the pairs, every edge's mean score, both curves, the smallest k reaching the
                            threshold, the circuit (connected, at its smallest k) with its nodes, timings
    circuits/NAME.png       the two faithfulness curves (needs matplotlib, the `space` extra; skipped without)
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import re
import sys
import time

from .atomic_files import write_file_atomic
from .head_atlas import analysis_parser, check_model_folder
from .space_modules import use_space_modules

PROG = "python -m training.circuit_atlas"
DEFAULT_KS = (0, 5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300, 500)
WORD = re.compile(r"^[^\s:=]+$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def _lens():
    """encdec_lens lives in space/ (the Space deploys alone); importable from a checkout without installing."""
    use_space_modules()
    from encdec_lens import circuit_discovery, inputs

    return circuit_discovery, inputs


def parse_swap(text: str) -> dict:
    """ "man:woman" or "man:woman=Mann:Frau" -> {"source": (A, B), "target": (X, Y) or None}."""
    source, _, target = text.partition("=")
    a, _, b = source.partition(":")
    if not (WORD.match(a) and WORD.match(b)) or a == b:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected two different words A:B (optionally =X:Y), e.g. man:woman or man:woman=Mann:Frau"
        )
    words = None
    if target:
        x, _, y = target.partition(":")
        if not (WORD.match(x) and WORD.match(y)) or x == y:
            raise argparse.ArgumentTypeError(
                f"{text!r}: after '=' expected two different target-side words X:Y, e.g. man:woman=Mann:Frau"
            )
        words = (x, y)
    return {"source": (a, b), "target": words}


def parse_args(argv=None):
    parser = analysis_parser(PROG, __doc__, "circuit")
    pairs = parser.add_mutually_exclusive_group(required=True)
    pairs.add_argument("--pairs", help="a TSV file: clean, corrupted[, target, contrast] per line")
    pairs.add_argument(
        "--swap",
        type=parse_swap,
        action="append",
        help="A:B or A:B=X:Y: pairs from the split, word A replaced by B (repeatable)",
    )
    parser.add_argument(
        "--data",
        default="../shared/data/multi30k",
        help="with --swap: a local folder of {split}.{lang}.gz files (the Multi30k layout)",
    )
    parser.add_argument(
        "--split",
        default="val",
        help="with --swap: the split whose sentences are swapped; with "
        "--mean-ablation: the split whose first sentences are the references",
    )
    parser.add_argument("--source-lang", default="en", help="source language code, as in the file names")
    parser.add_argument("--target-lang", default="de", help="target language code, as in the file names")
    parser.add_argument("--max-pairs", type=int, default=40, help="at most N pairs, the first ones made (0: all)")
    parser.add_argument(
        "--mean-ablation",
        action="store_true",
        help="ablate each node to its mean output over the references, not to a corrupted source",
    )
    parser.add_argument(
        "--references",
        type=int,
        default=None,
        help="with --mean-ablation: the first N sentences of --split are the references (default 50)",
    )
    parser.add_argument("--method", default="eap-ig", choices=("eap", "eap-ig"), help="edge attribution method")
    parser.add_argument("--steps", type=int, default=5, help="EAP-IG: integration steps")
    parser.add_argument(
        "--ks",
        type=int,
        nargs="+",
        default=None,
        help=f"circuit sizes of the curves (default {' '.join(map(str, DEFAULT_KS))} and every edge)",
    )
    parser.add_argument("--threshold", type=float, default=0.8, help="the faithfulness a circuit must reach")
    parser.add_argument(
        "--name", default=None, help="file name in MODEL/circuits/ (default: from --swap or --pairs, e.g. man-woman)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing circuits/NAME.json")
    args = parser.parse_args(argv)
    if args.references is not None and not args.mean_ablation:
        parser.error("--references is for --mean-ablation")
    args.references = 50 if args.references is None else args.references
    if args.references < 1:
        parser.error("--references must be at least 1")
    if args.max_pairs < 0:
        parser.error("--max-pairs must be 0 (all) or positive")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.ks is not None and min(args.ks) < 0:
        parser.error("--ks must be edge counts, 0 or more")
    if not 0 < args.threshold <= 1:
        parser.error("--threshold must be in (0, 1]")
    if args.name is None:
        if args.swap:
            args.name = "+".join(f"{s['source'][0]}-{s['source'][1]}" for s in args.swap)
        else:
            args.name = os.path.splitext(os.path.basename(args.pairs))[0]
    if not NAME.match(args.name):
        parser.error(f"--name {args.name!r}: use letters, digits and . _ + - only (it becomes a file name)")
    return args


def output_paths(folder: str, name: str, overwrite: bool) -> tuple[str, str]:
    """circuits/NAME.json and .png, or SystemExit when one exists and --overwrite is not given."""
    out = os.path.join(folder, "circuits")
    paths = os.path.join(out, f"{name}.json"), os.path.join(out, f"{name}.png")
    existing = [p for p in paths if os.path.exists(p)]
    if existing and not overwrite:
        raise SystemExit(f"{PROG}: {existing[0]} exists; pass --overwrite to replace it, or --name for another file.")
    return paths


# --- pairs -----------------------------------------------------------------------------------------------------
def read_pairs_file(path: str, mean_ablation: bool = False) -> list[dict]:
    """[{"clean", "corrupted", "target", "contrast"}] (target, contrast None where not given) or SystemExit. With
    `mean_ablation` a line may also be clean <TAB> target <TAB> contrast (corrupted None)."""
    fields = (2, 3, 4) if mean_ablation else (2, 4)
    expected = (
        "clean <TAB> corrupted [<TAB> target <TAB> contrast] or clean <TAB> target <TAB> contrast"
        if mean_ablation
        else "clean <TAB> corrupted [<TAB> target <TAB> contrast]"
    )
    if not os.path.isfile(path):
        raise SystemExit(f"{PROG}: pairs file {path!r} does not exist ({os.path.abspath(path)}).")
    pairs = []
    with open(path, encoding="utf-8", newline="") as fh:
        for number, row in enumerate(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if not row or not "".join(row).strip():
                continue
            if number == 1 and row[0].strip().lower() == "clean":
                continue
            row = [cell.strip() for cell in row]
            if len(row) not in fields or not all(row):
                hint = "" if mean_ablation or len(row) != 3 else " (no corrupted column: pass --mean-ablation)"
                raise SystemExit(
                    f"{PROG}: {path}, line {number}: expected {expected}, all non-empty; got "
                    f"{len(row)} field(s) {row!r}{hint}."
                )
            if len(row) == 3:
                row = [row[0], None, row[1], row[2]]
            pairs.append(
                {
                    "clean": row[0],
                    "corrupted": row[1],
                    "target": row[2] if len(row) == 4 else None,
                    "contrast": row[3] if len(row) == 4 else None,
                }
            )
    if not pairs:
        raise SystemExit(f"{PROG}: {path} holds no pairs: expected {expected} lines.")
    return pairs


def _word_pattern(word: str):
    return re.compile(
        r"(?<![\w-])("
        + re.escape(word[0].lower())
        + "|"
        + re.escape(word[0].upper())
        + ")"
        + re.escape(word[1:])
        + r"(?![\w-])"
    )


def swap_word(sentence: str, a: str, b: str) -> str | None:
    """The sentence with every whole-word A replaced by B (a capital first letter kept), None if it has no A."""
    pattern = _word_pattern(a)
    if not pattern.search(sentence):
        return None
    return pattern.sub(lambda m: (b[0].upper() if m.group(1).isupper() else b[0].lower()) + b[1:], sentence)


def swapped_pairs(sentences: list[str], swaps: list[dict], split: str) -> list[dict]:
    """Candidate pairs from the split: each sentence with the first swap whose word it has. SystemExit for a swap
    word that no sentence has."""
    for swap in swaps:
        a = swap["source"][0]
        if not any(_word_pattern(a).search(s) for s in sentences):
            raise SystemExit(
                f"{PROG}: unknown word {a!r}: none of the {len(sentences)} {split} sentences has it (as "
                "a whole word); pick a word of the split, e.g. man, dog, two."
            )
    pairs = []
    for sentence in sentences:
        for swap in swaps:
            corrupted = swap_word(sentence, *swap["source"])
            if corrupted is not None:
                target = swap["target"] or (None, None)
                pairs.append(
                    {
                        "clean": sentence,
                        "corrupted": corrupted,
                        "target": target[0],
                        "contrast": target[1],
                        "swap": ":".join(swap["source"]),
                    }
                )
                break
    return pairs


def target_pieces(tokenizer, target: str, contrast: str) -> tuple[list[int], int]:
    """The target word's token ids and the index of its first piece that differs from the contrast word's."""
    t, c = (tokenizer(w, add_special_tokens=False)["input_ids"] for w in (target, contrast))
    unk = tokenizer.unk_token_id
    for word, ids in ((target, t), (contrast, c)):
        if not ids or (unk is not None and unk in ids):
            pieces = tokenizer.convert_ids_to_tokens(ids)
            raise SystemExit(
                f"{PROG}: unknown word {word!r}: the tokenizer gives {pieces} (unknown or empty); pick "
                "a target-side word the model knows."
            )
    j = next((i for i, (x, y) in enumerate(zip(t, c)) if x != y), min(len(t), len(c)))
    if j >= len(t) or j >= len(c):
        raise SystemExit(
            f"{PROG}: {target!r} {tokenizer.convert_ids_to_tokens(t)} and {contrast!r} "
            f"{tokenizer.convert_ids_to_tokens(c)}: one's token pieces begin the other's, so no piece "
            "tells them apart; pick other words."
        )
    return t[: j + 1], c[j]


def find(sequence: list[int], part: list[int]) -> int | None:
    for i in range(len(sequence) - len(part) + 1):
        if sequence[i : i + len(part)] == part:
            return i
    return None


def make_tasks(model, tokenizer, candidates: list[dict], max_pairs: int, references: list[str] | None = None):
    """(tasks, records, skipped counts): a CircuitTask per usable candidate, the first `max_pairs` of them. With
    `references` (mean ablation) the corrupted source, if any, only chooses the target and contrast."""
    circuit_discovery, inputs = _lens()
    tasks, records, skipped = [], [], collections.Counter()
    pieces = {}
    if references is not None:  # tokenized once, for every task
        references = [inputs.source_ids(model, tokenizer, r) for r in references]
    for pair in candidates:
        if max_pairs and len(tasks) >= max_pairs:
            break
        clean_ids = inputs.source_ids(model, tokenizer, pair["clean"])
        corrupted_ids = None if pair["corrupted"] is None else inputs.source_ids(model, tokenizer, pair["corrupted"])
        if references is None and len(clean_ids) != len(corrupted_ids):
            skipped["the two sources differ in token length"] += 1
            continue
        translation = inputs.generate_ids(model, clean_ids, num_beams=1)
        if pair["target"] is not None:
            key = (pair["target"], pair["contrast"])
            if key not in pieces:
                pieces[key] = target_pieces(tokenizer, *key)
            part, contrast = pieces[key]
            start = find(translation, part)
            if start is None:
                skipped[f"the clean translation has no {pair['target']!r}"] += 1
                continue
            position, target = start + len(part) - 1, part[-1]
            other = None
        else:
            other = inputs.generate_ids(model, corrupted_ids, num_beams=1)
            position = next((i for i, (x, y) in enumerate(zip(translation, other)) if x != y), None)
            if position is None:
                skipped["both translations are the same"] += 1
                continue
            target, contrast = translation[position], other[position]
        task = circuit_discovery.make_task(
            model,
            clean_ids,
            None if references else corrupted_ids,
            translation,
            tokenizer=tokenizer,
            target=target,
            contrast=contrast,
            position=position,
            references=references,
        )
        tasks.append(task)
        record = {
            "clean": pair["clean"],
            "corrupted": pair["corrupted"],
            "translation": inputs.decode(tokenizer, translation),
            "target": tokenizer.convert_ids_to_tokens(target),
            "contrast": tokenizer.convert_ids_to_tokens(contrast),
            "position": position,
        }
        if other is not None:
            record["corrupted_translation"] = inputs.decode(tokenizer, other)
        records.append(record)
    return tasks, records, skipped


def no_pairs_message(where: str, candidates: int, skipped: collections.Counter) -> str:
    reasons = "; ".join(f"{n} {reason}" for reason, n in skipped.most_common()) or "none"
    return (
        f"{PROG}: no pairs made from {where}: {candidates} candidate pair(s), skipped: {reasons}. Pick words of "
        "the same token length (see the tokenizer) that change the translation."
    )


# --- the atlas entry -------------------------------------------------------------------------------------------
def compute(model, tokenizer, tasks, records, args) -> dict:
    circuit_discovery, _ = _lens()
    n = len(circuit_discovery.EdgeGraph(model))
    if args.ks is not None and max(args.ks) > n:
        raise SystemExit(f"{PROG}: --ks {max(args.ks)}: the graph has {n} edges (0..{n}).")
    ks = sorted(set(k for k in (args.ks or DEFAULT_KS) if k <= n) | ({n} if args.ks is None else set()))
    scores = circuit_discovery.mean_edge_attribution(model, tasks, method=args.method, steps=args.steps)
    start = time.perf_counter()
    curves = {
        c: circuit_discovery.faithfulness_curve(model, scores, ks, args.threshold, circuit=c)
        for c in circuit_discovery.CIRCUITS
    }
    faithfulness_seconds = time.perf_counter() - start
    for record, clean, corrupted in zip(records, scores.clean_metrics, scores.corrupted_metrics):
        record.update(clean_metric=clean, corrupted_metric=corrupted)
    graph = scores.graph
    circuits = {}
    for kind, curve in curves.items():
        k = curve.smallest_k if curve.smallest_k is not None else max(ks)
        order = scores.order(kind)[:k]
        to_logits, from_source = circuit_discovery.on_paths(graph, order)
        nodes = sorted({graph.nodes[i].name for e in order.tolist() for i in graph.edges[e][:2]})
        circuits[kind] = {
            "circuit": kind,
            "k": k,
            "reaches_threshold": curve.smallest_k is not None,
            "faithfulness": curve.faithfulness[ks.index(k)],
            "edges_on_a_path_to_the_logits": sum(to_logits),
            "edges_on_a_path_from_the_source": sum(from_source),
            "edges_on_both": sum(a and b for a, b in zip(to_logits, from_source)),
            "nodes": nodes,
            "edges": [{"edge": graph.edge_label(e), "score": float(scores.scores[e])} for e in order.tolist()],
        }
    return {
        "name": args.name,
        "model": args.model,
        "method": args.method,
        "steps": scores.steps,
        "pairs_from": (
            f"--pairs {args.pairs}"
            if args.pairs
            else f"{args.split} split of {args.data}, --swap "
            + " --swap ".join(
                ":".join(s["source"]) + ("=" + ":".join(s["target"]) if s["target"] else "") for s in args.swap
            )
        ),
        "metric": (
            "logit[target] - logit[contrast] at the pair's decoder position, teacher-forced on the greedy "
            "translation of the clean source; scores and metrics are means over the pairs"
        ),
        "faithfulness": (
            "(mean M(circuit) - mean M(corrupted)) / (mean M(clean) - mean M(corrupted)), by edge-level "
            "interventions (mask 1 on the circuit's edges, 0 elsewhere) on every pair"
        ),
        "ablation": (
            f"mean: each node's mean output over the first {args.references} {args.split} sentences of "
            f"{args.data}; M(corrupted) is the graph with every mask 0"
            if args.mean_ablation
            else "corrupted source: each node's output on the pair's corrupted source"
        ),
        "num_pairs": len(tasks),
        "num_edges": n,
        "threshold": args.threshold,
        "clean_metric": scores.clean_metric,
        "corrupted_metric": scores.corrupted_metric,
        "smallest_k": {kind: curve.smallest_k for kind, curve in curves.items()},
        "curves": {kind: curve.to_dict() for kind, curve in curves.items()},
        "circuit": circuits["connected"],
        "top_circuit": circuits["top"],
        "edges": scores.to_dict()["edges"],
        "pairs": records,
        "seconds": {
            "attribution": round(scores.seconds, 2),
            "attribution_per_pair": round(scores.seconds / len(tasks), 3),
            "faithfulness": round(faithfulness_seconds, 2),
        },
    }


def plot_curves(result: dict, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    labels = {"top": "top-k edges by |score|", "connected": "connected (greedy from the logits)"}
    for (kind, curve), marker in zip(result["curves"].items(), "os"):
        smallest = f", {int(100 * result['threshold'])}% at k = {curve['smallest_k']}" if curve["smallest_k"] else ""
        ax.plot(curve["ks"], curve["faithfulness"], marker=marker, markersize=4, label=labels[kind] + smallest)
    ax.axhline(result["threshold"], color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(0, result["num_edges"])
    ax.set_xlabel(f"edges in the circuit (of {result['num_edges']})")
    ax.set_ylabel("faithfulness (mean-normalised)")
    ax.set_title(f"{result['name']}: {result['method'].upper()} circuits, {result['num_pairs']} pairs", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")


def load_sources(args) -> list[str]:
    """The source sentences of --split in --data, or SystemExit."""
    from .data import DataError, load_local

    if not os.path.isdir(args.data):
        raise SystemExit(
            f"{PROG}: data folder {args.data!r} does not exist ({os.path.abspath(args.data)}); "
            "pass --data with a folder of the Multi30k layout ({split}.{lang}.gz)."
        )
    try:
        return load_local(args.data, args.split, args.source_lang, args.target_lang).source
    except DataError as e:
        raise SystemExit(f"{PROG}: {e}") from None


def main(argv=None) -> int:
    args = parse_args(argv)
    folder = check_model_folder(args.model, PROG)
    json_path, png_path = output_paths(folder, args.name, args.overwrite)
    sentences = load_sources(args) if args.swap or args.mean_ablation else None
    if args.pairs:
        candidates, where = read_pairs_file(args.pairs, args.mean_ablation), args.pairs
    else:
        candidates, where = swapped_pairs(sentences, args.swap, args.split), f"the {args.split} split"
    references = sentences[: args.references] if args.mean_ablation else None
    from .evaluate import load

    model, tokenizer = load(folder)
    start = time.perf_counter()
    tasks, records, skipped = make_tasks(model, tokenizer, candidates, args.max_pairs, references)
    if not tasks:
        raise SystemExit(no_pairs_message(where, len(candidates), skipped))
    pairs_seconds = time.perf_counter() - start
    try:
        result = compute(model, tokenizer, tasks, records, args)
    except ValueError as e:  # e.g. the metric is the same on both sides of every pair
        raise SystemExit(f"{PROG}: {e}") from None
    result["skipped"] = dict(skipped)
    result["seconds"]["pairs"] = round(pairs_seconds, 2)
    result["seconds"]["total"] = round(time.perf_counter() - start, 2)
    os.makedirs(os.path.dirname(json_path), exist_ok=True)

    def write_json(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1, ensure_ascii=False)
            fh.write("\n")

    write_file_atomic(json_path, write_json)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(f"{PROG}: matplotlib is not installed: no figure (pip install matplotlib, or the `space` extra)")
    else:
        write_file_atomic(png_path, lambda tmp: plot_curves(result, tmp))
    print(
        f"{json_path}: {result['num_pairs']} pairs ({sum(skipped.values())} skipped), {result['method']}, "
        f"{result['num_edges']} edges, {result['seconds']['attribution_per_pair']} s per pair for the scores, "
        f"{result['seconds']['total']} s in all"
    )
    print(f"  mean metric: clean {result['clean_metric']:.3f}, corrupted {result['corrupted_metric']:.3f}")
    for kind, curve in result["curves"].items():
        print(
            f"  {kind:9s} smallest k for {result['threshold']:.0%}: {curve['smallest_k']}; "
            + " ".join(f"{k}:{f:.3f}" for k, f in zip(curve["ks"], curve["faithfulness"]))
        )
    print("  top edges by |mean score|:")
    for edge in result["edges"][:10]:
        print(f"    {edge['score']:+.4f}  {edge['edge']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
