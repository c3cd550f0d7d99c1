"""Translate lines from stdin or files with a model folder or Hub id.

    echo "A dog runs on the beach." | python -m training.translate space/model
    python -m training.translate space/model --input captions.en --output captions.de --num-beams 4
    python -m training.translate /tmp/ct2 --engine ctranslate2   # a folder written by export_marian --ctranslate2
    python -m training.translate /tmp/onnx --engine onnxruntime  # a folder written by export_marian --onnx

With `--engine ctranslate2` MODEL is a CTranslate2 model folder (its tokenizer and generation_config.json
beside it); it decodes as generate() does (the same beam size, length penalty and maximum length). With
`--engine onnxruntime` MODEL is an ONNX folder; generate() itself decodes, every forward pass in ONNX Runtime.
"""

from __future__ import annotations

import argparse
import sys


def translate_torch(model_id: str, sentences: list[str], batch_size: int, gen: dict) -> list[str]:
    from .evaluate import load
    from .translate_utils import translate_batch

    model, tokenizer = load(model_id)
    return translate_batch(model, tokenizer, sentences, batch_size, **gen)


def translate_ctranslate2(folder: str, sentences: list[str], batch_size: int, gen: dict) -> list[str]:
    """CTranslate2's translations, decoded with the settings generate() would use (generation_config.json beside
    the model; --num-beams and --max-new-tokens override them)."""
    try:
        import ctranslate2
    except ImportError:
        raise SystemExit("translate: --engine ctranslate2 needs CTranslate2: pip install -e '.[deploy]'.") from None
    from transformers import AutoTokenizer, GenerationConfig

    from .export_marian import ctranslate2_translate

    tokenizer = AutoTokenizer.from_pretrained(folder)
    try:
        config = GenerationConfig.from_pretrained(folder)
    except OSError:
        config = GenerationConfig()
    beams = gen.get("num_beams", config.num_beams or 1)
    max_length = gen["max_new_tokens"] + 1 if "max_new_tokens" in gen else (config.max_length or 128)
    penalty = config.length_penalty if beams > 1 and config.length_penalty is not None else 1.0
    translator = ctranslate2.Translator(folder, device="cpu")
    out = []
    for start in range(0, len(sentences), batch_size):
        ids = ctranslate2_translate(
            translator, tokenizer, sentences[start : start + batch_size], beams, penalty, max_length
        )
        out += [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return out


def translate_onnxruntime(folder: str, sentences: list[str], batch_size: int, gen: dict) -> list[str]:
    """generate() over the ONNX graphs (export_marian.load_onnx_model): the folder's generation_config.json, with
    --num-beams and --max-new-tokens overriding it, batched and length-sorted as the torch engine is."""
    from transformers import AutoTokenizer

    from .export_marian import ExportError, load_onnx_model
    from .translate_utils import translate_batch

    try:
        model = load_onnx_model(folder)
    except ExportError as e:
        raise SystemExit(f"translate: --engine onnxruntime: {e}") from None
    return translate_batch(model, AutoTokenizer.from_pretrained(folder), sentences, batch_size, **gen)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.translate", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model folder (one with config.json) or Hub model id owner/name")
    parser.add_argument("--input", help="file with one sentence per line (default: stdin)")
    parser.add_argument("--output", help="file to write (default: stdout); refuses to overwrite an existing file")
    parser.add_argument("--num-beams", type=int, default=None, help="default: the model's generation_config")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    parser.add_argument(
        "--engine",
        choices=("torch", "ctranslate2", "onnxruntime"),
        default="torch",
        help="torch: the model's generate(); ctranslate2: a CTranslate2 model folder "
        "(python -m training.export_marian MODEL OUT --ctranslate2 DIR); onnxruntime: an ONNX "
        "folder (python -m training.export_marian MODEL OUT --onnx DIR)",
    )
    args = parser.parse_args(argv)

    import os

    from .evaluate import resolve_model

    if args.engine == "ctranslate2":
        if not os.path.isfile(os.path.join(args.model, "model.bin")):
            raise SystemExit(
                f"translate: {args.model} is not a CTranslate2 model folder (no model.bin); write one "
                "with python -m training.export_marian MODEL OUT --ctranslate2 DIR."
            )
        model_id = args.model
    elif args.engine == "onnxruntime":
        from .export_marian import ONNX_GRAPHS

        if not all(os.path.isfile(os.path.join(args.model, name)) for name in ONNX_GRAPHS):
            raise SystemExit(
                f"translate: {args.model} is not an ONNX model folder (no {', '.join(ONNX_GRAPHS)}); "
                "write one with python -m training.export_marian MODEL OUT --onnx DIR."
            )
        model_id = args.model
    else:
        model_id = resolve_model(args.model, "translate")  # a missing folder fails here, before stdin is read
    if args.output and os.path.exists(args.output) and not args.force:
        raise SystemExit(f"translate: {args.output} exists; pass --force to overwrite it.")
    if args.input:
        try:
            with open(args.input, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except OSError as e:
            raise SystemExit(f"translate: cannot read {args.input}: {e}") from None
        except UnicodeDecodeError as e:
            raise SystemExit(
                f"translate: {args.input} is not UTF-8 text ({e}); convert it first, e.g. iconv -f latin1 -t utf-8."
            ) from None
    else:
        try:
            lines = sys.stdin.buffer.read().decode("utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise SystemExit(
                f"translate: the input is not UTF-8 text ({e}); convert it first, e.g. iconv -f latin1 -t utf-8."
            ) from None
    gen = {k: v for k, v in (("num_beams", args.num_beams), ("max_new_tokens", args.max_new_tokens)) if v is not None}
    todo = [i for i, line in enumerate(lines) if line.strip()]
    out = [""] * len(lines)  # empty lines stay empty, so line N of the output matches line N of the input
    translate = {"ctranslate2": translate_ctranslate2, "onnxruntime": translate_onnxruntime}.get(
        args.engine, translate_torch
    )
    for i, text in zip(todo, translate(model_id, [lines[i] for i in todo], args.batch_size, gen)):
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
