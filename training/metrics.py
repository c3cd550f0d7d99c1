"""BLEU and chrF through sacrebleu, in the two conventions Multi30k results are reported in.

1. Cased, detokenised sacreBLEU against the raw references, with its signature (the modern standard).
2. The Multi30k / fairseq "multi-bleu" convention: lowercase the system output, normalise punctuation and
   Moses-tokenise it (sacremoses, with Moses' default escaping of quotes), then BLEU with no further tokenisation against the official
   lowercased, normalised, tokenised references (`tok/{split}.lc.norm.tok.{lang}.gz`).
"""

from __future__ import annotations

import os
from functools import lru_cache

import sacrebleu


@lru_cache(maxsize=8)
def _moses(lang: str):
    from sacremoses import MosesPunctNormalizer, MosesTokenizer

    return MosesPunctNormalizer(lang=lang), MosesTokenizer(lang=lang)


def moses_lc_tokenize(lines: list[str], lang: str) -> list[str]:
    """Lowercase, normalise punctuation, Moses-tokenise with the target language's rules, as the official
    references were made. That includes Moses' default escaping (`"` -> `&quot;`, `'` -> `&apos;`): the
    official files hold `&quot;` and `&apos;`, so an unescaped quote in a translation would never match.
    Applied to the raw references, this reproduces the official tokenised files on 8,110 of their 8,112
    lines (tests/training/test_training_metrics.py)."""
    norm, tok = _moses(lang)
    return [tok.tokenize(norm.normalize(line.lower()), escape=True, return_str=True) for line in lines]


def tokenized_references(data_folder: str | None, split: str, lang: str, raw_refs: list[str]) -> tuple[list[str], str]:
    """The official tokenised references when the folder has them, else the raw ones put through the same steps."""
    if data_folder:
        path = os.path.join(data_folder, "tok", f"{split}.lc.norm.tok.{lang}.gz")
        if os.path.isfile(path):
            from .data import read_lines

            refs = read_lines(path)
            if len(refs) == len(raw_refs):
                return refs, path
    return moses_lc_tokenize(raw_refs, lang), "raw references, lowercased + normalised + Moses-tokenised here"


def score(
    hypotheses: list[str], references: list[str], lang: str, data_folder: str | None = None, split: str | None = None
) -> dict:
    """All reported metrics for one system output."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references.")
    bleu = sacrebleu.metrics.BLEU()
    cased = bleu.corpus_score(hypotheses, [references])
    chrf_metric = sacrebleu.metrics.CHRF()
    chrf = chrf_metric.corpus_score(hypotheses, [references])
    tok_refs, tok_source = (
        tokenized_references(data_folder, split, lang, references)
        if split
        else (moses_lc_tokenize(references, lang), "raw references, lowercased + normalised + Moses-tokenised here")
    )
    tok_bleu = sacrebleu.metrics.BLEU(tokenize="none", force=True).corpus_score(
        moses_lc_tokenize(hypotheses, lang), [tok_refs]
    )
    return {
        "bleu": round(cased.score, 2),
        "bleu_signature": str(bleu.get_signature()),
        "chrf": round(chrf.score, 2),
        "chrf_signature": str(chrf_metric.get_signature()),
        "bleu_lc_tok": round(tok_bleu.score, 2),
        "bleu_lc_tok_references": tok_source,
        "sentences": len(hypotheses),
    }
