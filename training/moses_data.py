"""Multi30k the way Wu et al. (2021) and fairseq's recipes train on it: lowercased, punctuation-normalised and
Moses-tokenised (sacremoses), as the official `tok/{split}.lc.norm.tok.{lang}` files were made.

    python -m training.moses_data ../shared/data/multi30k ~/.cache/vanilla-transformer/multi30k-lc-tok
    python -m training.train --config training/configs/wu2021_tiny.json

OUT receives `{split}.{lang}.gz` for every split file of SRC, line for line, written beside OUT and renamed
into place. Moses' escaping (`"` -> `&quot;`) is left off: a model trained on this text writes plain quotes,
which the tokenised BLEU of `training/metrics.py` escapes exactly as the official references are escaped.
`OUT/tok` links to SRC's official tokenised references, so that BLEU is scored against them, as in the papers.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import sys

from .atomic_files import staged_folder

SPLIT_FILE = re.compile(r"^(?P<split>[\w-]+)\.(?P<lang>[a-z]{2})(\.gz)?$")


def moses_lc(lines: list[str], lang: str) -> list[str]:
    """Lowercase, normalise punctuation and Moses-tokenise with `lang`'s rules, without escaping."""
    from sacremoses import MosesPunctNormalizer, MosesTokenizer

    norm, tok = MosesPunctNormalizer(lang=lang), MosesTokenizer(lang=lang)
    return [tok.tokenize(norm.normalize(line.lower()), escape=False, return_str=True) for line in lines]


def split_files(src: str) -> list[tuple[str, str]]:
    """(file name, language) of every split file in SRC, e.g. ("train.en.gz", "en"): the files of each split
    that comes in at least two languages (parallel text; a README.md is not a split)."""
    matches = [(name, m) for name in sorted(os.listdir(src)) if (m := SPLIT_FILE.match(name))]
    languages = {}
    for _, m in matches:
        languages.setdefault(m.group("split"), set()).add(m.group("lang"))
    found = [(name, m.group("lang")) for name, m in matches if len(languages[m.group("split")]) >= 2]
    if not found:
        raise SystemExit(f"moses_data: {src} holds no {{split}}.{{lang}}[.gz] files (the Multi30k layout).")
    return found


def prepare(src: str, out: str) -> list[str]:
    """Write the lowercased tokenised copy of every split file of SRC into OUT; returns the names written."""
    from .data import read_lines

    src, out = os.path.abspath(os.path.expanduser(src)), os.path.abspath(os.path.expanduser(out))
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise SystemExit(f"moses_data: {out} exists and is not an empty folder; name a new one.")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    written = []
    with staged_folder(out) as staged:
        for name, lang in split_files(src):
            target = re.sub(r"(\.gz)?$", ".gz", name, count=1)
            with gzip.open(os.path.join(staged.path, target), "wt", encoding="utf-8") as fh:
                fh.write("\n".join(moses_lc(read_lines(os.path.join(src, name)), lang)) + "\n")
            written.append(target)
        if os.path.isdir(os.path.join(src, "tok")):
            os.symlink(os.path.join(src, "tok"), os.path.join(staged.path, "tok"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.moses_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="a folder of the Multi30k layout ({split}.{lang}[.gz] files)")
    parser.add_argument("out", help="the new folder to write (it must not exist, or be empty)")
    args = parser.parse_args(argv)
    written = prepare(args.src, args.out)
    print(f"wrote {len(written)} files to {os.path.abspath(os.path.expanduser(args.out))}: {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
