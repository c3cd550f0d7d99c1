"""Evaluate a model folder or Hub id on a split of parallel text.

    python -m training.evaluate space/model --split test_2016_flickr [--data ../shared/data/multi30k] [--json]
    python -m training.evaluate --hypotheses FILE --split test_2016_flickr --target-lang de   # rescore an output

Prints cased detokenised sacreBLEU with its signature, chrF, and the Multi30k lowercased-tokenised BLEU. With
--hypotheses it translates nothing: it scores a system output that is already written, one sentence per line
in the split's order (a model folder's translations/SPLIT.LANG, say), against the same references.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .space_modules import model_metadata


def looks_local(model_id: str) -> bool:
    """True when `model_id` is meant as a folder on this machine: it exists, starts with `.`, `/` or `~`, or is
    not of the Hub's `owner/name` form (no slash, several, other characters); the Space's rule."""
    return model_metadata().looks_local(model_id)


def local_model_problem(model_id: str) -> str | None:
    """Why `model_id`, meant as a local folder, holds no model (None when it may: a folder with config.json, or
    a Hub id). Checked before transformers is imported, so a mistyped path fails at once instead of being
    tried on the Hub."""
    if not looks_local(model_id):
        return None
    path = os.path.expanduser(model_id)
    if not os.path.exists(path):
        return (
            f"model folder {model_id!r} does not exist ({os.path.abspath(path)}); pass a folder written by "
            "training.train or save_pretrained (a run's model/), or a Hub model id of the form owner/name."
        )
    if not os.path.isdir(path):
        return f"{model_id!r} is a file, not a model folder; pass the folder that holds config.json."
    if not os.path.isfile(os.path.join(path, "config.json")):
        return (
            f"{model_id!r} is not a model folder (no config.json in it); pass a folder written by "
            "training.train or save_pretrained (a run's model/)."
        )
    return None


def resolve_model(model_id: str, prog: str) -> str:
    """`model_id` as transformers should get it (a local path with `~` expanded, or the Hub id); SystemExit
    starting with `prog` and naming the path when it is a local path that holds no model."""
    if problem := local_model_problem(model_id):
        raise SystemExit(f"{prog}: {problem}")
    return os.path.expanduser(model_id) if looks_local(model_id) else model_id


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "source.spm")


def load(model_id: str):
    """A model and tokenizer exactly as a Hub user loads them (remote code)."""
    model_id = resolve_model(model_id, "cannot load a model")
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    if os.path.isdir(model_id) and not any(os.path.isfile(os.path.join(model_id, name)) for name in TOKENIZER_FILES):
        raise SystemExit(
            f"cannot load a model from {model_id!r}: the folder has no tokenizer (none of "
            f"{', '.join(TOKENIZER_FILES)}); save it beside the model: tokenizer.save_pretrained(folder)."
        )
    try:
        # trust_remote_code here too: the folder's config.json has an auto_map, and without it transformers asks
        # on stdin whether to run the custom code (a prompt in the middle of `--json` output or a pipe).
        tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=True)
        model = AutoModelForSeq2SeqLM.from_pretrained(model_id, trust_remote_code=True).eval()
    except (OSError, ValueError) as e:
        raise SystemExit(f"cannot load a model from {model_id!r}: {e}") from None
    return model, tokenizer


def card_languages(model_id: str):
    """(source, target) from the `language` list of the model card (README.md; a Hub model's is downloaded), or
    None."""
    folder = model_id
    if not os.path.isdir(model_id):
        try:
            from huggingface_hub import hf_hub_download

            folder = os.path.dirname(hf_hub_download(model_id, "README.md"))
        except Exception:  # no card, no network: the caller's defaults apply
            return None
    return model_metadata().card_languages(folder)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="model folder (one with config.json) or Hub model id owner/name")
    parser.add_argument(
        "--hypotheses",
        metavar="FILE",
        help="score this system output (one sentence per line, the split's order) instead of translating",
    )
    parser.add_argument("--data", default="../shared/data/multi30k", help="Multi30k-layout folder or Hub dataset id")
    parser.add_argument("--split", default="test_2016_flickr")
    parser.add_argument("--source-lang", default=None, help="default: from the model card (else en)")
    parser.add_argument("--target-lang", default=None, help="default: from the model card (else de)")
    parser.add_argument("--num-beams", type=int, default=None, help="default: the model's generation_config")
    parser.add_argument("--length-penalty", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=0, help="only the first N sentences")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    if (args.model is None) == (args.hypotheses is None):
        parser.error("give a model to translate with, or --hypotheses FILE to score an output already written")
    if args.hypotheses:
        return rescore(args)
    model_id = resolve_model(args.model, "evaluate")  # a missing folder fails here, before any heavy import

    from .data import DataError, load_corpus
    from .metrics import score
    from .translate_utils import translate_batch

    model, tokenizer = load(model_id)
    metadata = model_metadata()
    card_src, card_tgt = (
        metadata.config_languages(model.config)
        or card_languages(model_id)  # config.json, else card
        or metadata.DEFAULT_LANGS
    )
    src_lang, tgt_lang = args.source_lang or card_src, args.target_lang or card_tgt
    try:
        corpus = load_corpus(args.data, args.split, src_lang, tgt_lang)
    except DataError as e:
        raise SystemExit(f"evaluate: {e}") from None
    src, ref = corpus.source, corpus.target
    if args.limit:
        src, ref = src[: args.limit], ref[: args.limit]
    gen = {}
    if args.num_beams is not None:
        gen["num_beams"] = args.num_beams
    if args.length_penalty is not None:
        gen["length_penalty"] = args.length_penalty
    start = time.time()
    hyps = translate_batch(model, tokenizer, src, batch_size=args.batch_size, **gen)
    result = score(hyps, ref, tgt_lang, data_folder=args.data if os.path.isdir(args.data) else None, split=args.split)
    result.update(
        model=args.model,
        split=args.split,
        seconds=round(time.time() - start, 1),
        num_beams=gen.get("num_beams", model.generation_config.num_beams),
        length_penalty=gen.get("length_penalty", model.generation_config.length_penalty),
    )
    heading = (
        f"{args.model} on {args.split} ({result['sentences']} sentences, beam {result['num_beams']}, "
        f"{result['seconds']} s)"
    )
    return report(result, heading, args.json)


def rescore(args) -> int:
    """Score the system output in args.hypotheses against the references of args.split."""
    from .data import DataError, load_corpus, read_lines
    from .metrics import score

    if not os.path.isfile(args.hypotheses):
        raise SystemExit(f"evaluate: --hypotheses {args.hypotheses!r} is not a file.")
    src_lang, tgt_lang = args.source_lang or "en", args.target_lang or "de"
    try:
        hyps = read_lines(args.hypotheses)  # the lines as written, empty translations included
        corpus = load_corpus(args.data, args.split, src_lang, tgt_lang)
    except DataError as e:
        raise SystemExit(f"evaluate: {e}") from None
    ref = corpus.target[: args.limit] if args.limit else corpus.target
    hyps = hyps[: args.limit] if args.limit else hyps
    if len(hyps) != len(ref):
        raise SystemExit(
            f"evaluate: {args.hypotheses} has {len(hyps)} lines but {args.split}.{tgt_lang} has {len(ref)} "
            "sentences; it must hold one translation per line, in the split's order (--limit N scores the first N)."
        )
    result = score(hyps, ref, tgt_lang, data_folder=args.data if os.path.isdir(args.data) else None, split=args.split)
    result.update(hypotheses=args.hypotheses, split=args.split)
    return report(result, f"{args.hypotheses} on {args.split} ({result['sentences']} sentences)", args.json)


def report(result: dict, heading: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print(heading)
        print(f"  BLEU (lowercased, Moses-tokenised, Multi30k convention): {result['bleu_lc_tok']}")
        print(f"  sacreBLEU (cased, detokenised): {result['bleu']}   {result['bleu_signature']}")
        print(f"  chrF: {result['chrf']}   {result['chrf_signature']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
