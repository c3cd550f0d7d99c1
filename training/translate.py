"""Translate lines from stdin or files with a model folder or Hub id.

    echo "A dog runs on the beach." | python -m training.translate space/model
    python -m training.translate space/model --input captions.en --output captions.de --num-beams 4
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.translate", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model folder (one with config.json) or Hub model id owner/name")
    parser.add_argument("--input", help="file with one sentence per line (default: stdin)")
    parser.add_argument("--output", help="file to write (default: stdout); refuses to overwrite an existing file")
    parser.add_argument("--num-beams", type=int, default=None, help="default: the model's generation_config")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    args = parser.parse_args(argv)

    import os

    from .evaluate import load, resolve_model

    model_id = resolve_model(args.model, "translate")  # a missing folder fails here, before stdin is read
    if args.output and os.path.exists(args.output) and not args.force:
        raise SystemExit(f"translate: {args.output} exists; pass --force to overwrite it.")
    if args.input:
        try:
            with open(args.input, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except OSError as e:
            raise SystemExit(f"translate: cannot read {args.input}: {e}")
        except UnicodeDecodeError as e:
            raise SystemExit(f"translate: {args.input} is not UTF-8 text ({e}); convert it first, e.g. "
                             "iconv -f latin1 -t utf-8.")
    else:
        try:
            lines = sys.stdin.buffer.read().decode("utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise SystemExit(f"translate: the input is not UTF-8 text ({e}); convert it first, e.g. "
                             "iconv -f latin1 -t utf-8.")
    from .translate_utils import translate_batch

    model, tokenizer = load(model_id)
    gen = {k: v for k, v in (("num_beams", args.num_beams), ("max_new_tokens", args.max_new_tokens)) if v is not None}
    todo = [i for i, line in enumerate(lines) if line.strip()]
    out = [""] * len(lines)  # empty lines stay empty, so line N of the output matches line N of the input
    for i, text in zip(todo, translate_batch(model, tokenizer, [lines[i] for i in todo], args.batch_size, **gen)):
        out[i] = text
    text = "\n".join(out) + ("\n" if out else "")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
