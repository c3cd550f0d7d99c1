"""Parallel text from a local folder in the Multi30k layout or from a Hub dataset.

Local layout: `{folder}/{split}.{lang}` or `{split}.{lang}.gz`, UTF-8, one sentence per line, line N of every
language of a split being the same sentence. Every problem is reported with the file and the line.
"""

from __future__ import annotations

import gzip
import logging
import os
from dataclasses import dataclass

logger = logging.getLogger(__name__)

LANGUAGES = ("en", "de", "fr", "cs")


class DataError(ValueError):
    """Bad or missing training data; the message names the file and line."""


@dataclass
class ParallelCorpus:
    source: list[str]
    target: list[str]
    skipped_empty: int = 0

    def __len__(self) -> int:
        return len(self.source)


def _split_file(folder: str, split: str, lang: str) -> str:
    plain, packed = (os.path.join(folder, name) for name in (f"{split}.{lang}", f"{split}.{lang}.gz"))
    if os.path.isfile(plain) and os.path.isfile(packed):
        logger.warning(
            "%s: reading %s; %s beside it is not read (remove one of the two)",
            folder,
            os.path.basename(plain),
            os.path.basename(packed),
        )
    for path in (plain, packed):
        if os.path.isfile(path):
            return path
    present = sorted(f for f in os.listdir(folder) if not f.startswith(".")) if os.path.isdir(folder) else []
    raise DataError(
        f"No file for split {split!r}, language {lang!r} in {folder!r}: looked for {split}.{lang} and "
        f"{split}.{lang}.gz. Present: {', '.join(present) or 'nothing (is the folder right?)'}."
    )


def read_lines(path: str) -> list[str]:
    """All lines of a text file (optionally gzip), without line ends; clear errors for bad encodings."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"Cannot read {path}: {e}") from e
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        raise DataError(f"{path} is empty: expected one sentence per line.")
    out = []
    for number, line in enumerate(lines, 1):
        try:
            out.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as e:
            raise DataError(f"{path}, line {number}: not valid UTF-8 ({e.reason} at byte {e.start}).") from e
    return out


def load_local(folder: str, split: str, source_lang: str, target_lang: str) -> ParallelCorpus:
    """Read one split of a language pair; drop pairs where either side is empty and count them."""
    if not os.path.isdir(folder):
        raise DataError(
            f"Data folder {folder!r} does not exist ({os.path.abspath(folder)}). Pass --data with either a local folder "
            f"of the Multi30k layout ({{split}}.{{lang}}[.gz] files, one sentence per line: {split}.{source_lang}.gz, "
            f"{split}.{target_lang}.gz, ...) or a Hub dataset id such as bentrevett/multi30k (whose splits are train, "
            "validation and test)."
        )
    src_path = _split_file(folder, split, source_lang)
    tgt_path = _split_file(folder, split, target_lang)
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: the two sides of a split must be "
            f"line-aligned (first difference in length after line {min(len(src), len(tgt))})."
        )
    corpus = ParallelCorpus([], [])
    for s, t in zip(src, tgt):
        s, t = s.strip(), t.strip()
        if not s or not t:
            corpus.skipped_empty += 1
            continue
        corpus.source.append(s)
        corpus.target.append(t)
    if corpus.skipped_empty:
        logger.warning("%s/%s: skipped %d pairs with an empty side", folder, split, corpus.skipped_empty)
    if not corpus.source:
        raise DataError(f"{src_path} and {tgt_path} hold no non-empty sentence pairs.")
    return corpus


def load_hub(dataset_id: str, split: str, source_lang: str, target_lang: str) -> ParallelCorpus:
    """A Hub dataset with either `{source_lang}`/`{target_lang}` columns or a `translation` dict column."""
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as e:  # no network, no such dataset or split: datasets raises many types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise DataError(
            f"Cannot load the Hub dataset {dataset_id!r}, split {split!r} ({first}). It needs a network "
            "(or the Hub cache); without one pass --data with a local folder of the Multi30k layout "
            "({split}.{lang}[.gz] files)."
        ) from None
    corpus = ParallelCorpus([], [])
    for row in ds:
        pair = row.get("translation", row)
        s, t = (pair.get(source_lang) or "").strip(), (pair.get(target_lang) or "").strip()
        if not s or not t:
            corpus.skipped_empty += 1
            continue
        corpus.source.append(s)
        corpus.target.append(t)
    if not corpus.source:
        raise DataError(f"Hub dataset {dataset_id!r} split {split!r} has no {source_lang}-{target_lang} pairs.")
    return corpus


def load_corpus(data: str, split: str, source_lang: str, target_lang: str) -> ParallelCorpus:
    """`data` is a local folder (an existing path, or anything that looks like one), else a Hub dataset id
    such as `bentrevett/multi30k` (whose splits are train / validation / test)."""
    if source_lang == target_lang:
        raise DataError(f"Source and target language are both {source_lang!r}.")
    looks_local = os.path.exists(data) or data.startswith((".", "/", "~")) or data.count("/") != 1
    if looks_local:
        return load_local(os.path.expanduser(data), split, source_lang, target_lang)
    return load_hub(data, split, source_lang, target_lang)
