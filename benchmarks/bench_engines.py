"""Translation engines side by side on real sentences: this project's generate(), the exported MarianMTModel's
generate(), CTranslate2 (float32 and int8) and ONNX Runtime, all from one model.

    python benchmarks/bench_engines.py                      # space/model, test_2016_flickr (1,000 sentences),
                                                            # greedy and beam 5, 1 and 2 threads
    python benchmarks/bench_engines.py --quick              # 40 sentences, 1 thread: a smoke run
    python benchmarks/bench_engines.py --engines torch,ctranslate2 --threads 2 --json out.json

The model is exported once into a temporary folder (`training.export_marian`: Marian, CTranslate2 float32 and
int8, ONNX), then every engine translates the same sentences in the same length-sorted batches of --batch-size
with the model's own decoding settings (generation_config.json: beam size 5 here, its length penalty, maximum
length). Per engine, decoding and thread count: sentences/s and target tokens/s over the whole split (the output
tokens, end token included), BLEU (sacrebleu, cased, detokenised), and the median latency of one sentence alone
(the first --latency-sentences of the split). CTranslate2 and ONNX Runtime get the thread count as their own
intra-op threads, the PyTorch engines as torch.set_num_threads. It prints a Markdown table, then the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

ENGINES = ("torch", "marian", "ctranslate2", "ctranslate2-int8", "onnxruntime")
ENGINE_TITLES = {
    "torch": "this project's generate()",
    "marian": "MarianMTModel generate()",
    "ctranslate2": "CTranslate2 float32",
    "ctranslate2-int8": "CTranslate2 int8",
    "onnxruntime": "ONNX Runtime (generate() over ONNX graphs)",
}


def export_all(model: str, folder: str, engines: list[str]) -> dict:
    """The model in every engine's format, under `folder`: {engine: path}."""
    from training.export_marian import export, to_ctranslate2

    paths = {"torch": model, "marian": os.path.join(folder, "marian")}
    ct2 = "ctranslate2" in engines
    onnx = "onnxruntime" in engines
    export(
        model,
        paths["marian"],
        ct2_out=os.path.join(folder, "ct2") if ct2 else None,
        onnx_out=os.path.join(folder, "onnx") if onnx else None,
    )
    if ct2:
        paths["ctranslate2"] = os.path.join(folder, "ct2")
    if onnx:
        paths["onnxruntime"] = os.path.join(folder, "onnx")
    if "ctranslate2-int8" in engines:
        paths["ctranslate2-int8"] = os.path.join(folder, "ct2-int8")
        to_ctranslate2(paths["marian"], paths["ctranslate2-int8"], "int8")
    return paths


class GenerateEngine:
    """A transformers model's generate(): this project's, the Marian export's, or one over ONNX Runtime."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model.eval(), tokenizer

    def translate(self, sentences: list[str], settings: dict) -> list[list[int]]:
        import torch

        batch = self.tokenizer(sentences, return_tensors="pt", padding=True)
        with torch.inference_mode():
            output = self.model.generate(**batch, do_sample=False, **settings)
        eos = self.model.generation_config.eos_token_id
        rows = []
        for row in output[:, 1:].tolist():
            rows.append(row[: row.index(eos) + 1] if eos in row else row)
        return rows


class CTranslate2Engine:
    def __init__(self, folder: str, tokenizer, threads: int):
        import ctranslate2

        self.translator = ctranslate2.Translator(folder, device="cpu", inter_threads=1, intra_threads=threads)
        self.tokenizer = tokenizer

    def translate(self, sentences: list[str], settings: dict) -> list[list[int]]:
        from training.export_marian import ctranslate2_translate

        beams = settings["num_beams"]
        return ctranslate2_translate(
            self.translator,
            self.tokenizer,
            sentences,
            beams,
            settings.get("length_penalty", 1.0) if beams > 1 else 1.0,
            settings["max_length"],
        )


def load_engine(name: str, path: str, threads: int):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, MarianMTModel

    if name == "torch":
        return GenerateEngine(
            AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True),
            AutoTokenizer.from_pretrained(path, trust_remote_code=True),
        )
    tokenizer = AutoTokenizer.from_pretrained(path)
    if name == "marian":
        return GenerateEngine(MarianMTModel.from_pretrained(path), tokenizer)
    if name == "onnxruntime":
        from training.export_marian import load_onnx_model

        return GenerateEngine(load_onnx_model(path, threads=threads), tokenizer)
    return CTranslate2Engine(path, tokenizer, threads)


def decoding_settings(model: str) -> dict:
    """{"greedy": ..., "beam": ...}: the model's generation_config.json (beam size, length penalty, max length)."""
    from transformers import GenerationConfig

    gen = GenerationConfig.from_pretrained(model)
    beam = {"num_beams": int(gen.num_beams or 5), "max_length": int(gen.max_length or 128)}
    if gen.length_penalty is not None:
        beam["length_penalty"] = float(gen.length_penalty)
    if gen.early_stopping is not None:
        beam["early_stopping"] = gen.early_stopping
    return {"greedy": {"num_beams": 1, "max_length": beam["max_length"]}, f"beam{beam['num_beams']}": beam}


def measure(
    engine, sentences: list[str], references: list[str], settings: dict, batch_size: int, latency_sentences: int
) -> dict:
    from training.metrics import score

    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    ids: list[list[int] | None] = [None] * len(sentences)
    engine.translate(sentences[:batch_size], settings)  # warm-up: first-call allocations, each runtime's setup
    start = time.perf_counter()
    for first in range(0, len(order), batch_size):
        chunk = order[first : first + batch_size]
        for i, row in zip(chunk, engine.translate([sentences[i] for i in chunk], settings)):
            ids[i] = row
    seconds = time.perf_counter() - start
    latencies = []
    for sentence in sentences[:latency_sentences]:
        t0 = time.perf_counter()
        engine.translate([sentence], settings)
        latencies.append(time.perf_counter() - t0)
    texts = [t.strip() for t in engine.tokenizer.batch_decode(ids, skip_special_tokens=True)]
    tokens = sum(len(row) for row in ids)
    return {
        "seconds": round(seconds, 3),
        "sentences_per_s": round(len(sentences) / seconds, 2),
        "target_tokens_per_s": round(tokens / seconds, 1),
        "target_tokens": tokens,
        "latency_ms_median": round(1000 * statistics.median(latencies), 1),
        "bleu": score(texts, references, "de")["bleu"],
        "outputs": texts,
    }


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| engine | decoding | threads | sentences/s | target tokens/s | BLEU | same as torch | one sentence (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {ENGINE_TITLES[r['engine']]} | {r['decoding']} | {r['threads']} | {r['sentences_per_s']:.1f} "
            f"| {r['target_tokens_per_s']:.0f} | {r['bleu']:.2f} | {r['same_as_torch']} "
            f"| {r['latency_ms_median']:.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default=os.path.join(ROOT, "space", "model"), help="model folder (default space/model)"
    )
    parser.add_argument(
        "--data",
        default=os.path.join(ROOT, "..", "shared", "data", "multi30k"),
        help="a Multi30k-layout folder (default ../shared/data/multi30k)",
    )
    parser.add_argument("--split", default="test_2016_flickr")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of {', '.join(ENGINES)}")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=0, help="only the first N sentences (0: all)")
    parser.add_argument("--latency-sentences", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="smoke run: 40 sentences, 1 thread, 3 latency sentences")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in args.engines if e not in ENGINES]
    if unknown:
        parser.error(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}")
    if "torch" not in args.engines:
        args.engines.insert(0, "torch")  # the reference every other engine's output is compared with
    args.threads = [int(t) for t in args.threads.split(",")]
    if args.quick:
        args.limit, args.threads, args.latency_sentences = args.limit or 40, [1], 3
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from training.data import load_local

    corpus = load_local(args.data, args.split, "en", "de")
    sentences, references = corpus.source, corpus.target
    if args.limit:
        sentences, references = sentences[: args.limit], references[: args.limit]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as folder:
        paths = export_all(args.model, folder, args.engines)
        for threads in args.threads:
            torch.set_num_threads(threads)
            for decoding, settings in decoding_settings(args.model).items():
                reference = None
                for name in args.engines:
                    engine = load_engine(name, paths[name], threads)
                    row = measure(engine, sentences, references, settings, args.batch_size, args.latency_sentences)
                    outputs = row.pop("outputs")
                    reference = outputs if name == "torch" else reference
                    row.update(
                        engine=name,
                        decoding=decoding,
                        threads=threads,
                        same_as_torch=f"{sum(a == b for a, b in zip(outputs, reference))}/{len(outputs)}",
                    )
                    rows.append(row)
                    print(
                        f"{name} {decoding} {threads} thread(s): {row['sentences_per_s']} sentences/s, "
                        f"BLEU {row['bleu']}",
                        file=sys.stderr,
                    )
    meta = {
        "model": os.path.relpath(os.path.abspath(args.model), ROOT),
        "split": args.split,
        "sentences": len(sentences),
        "batch_size": args.batch_size,
        "cpu_threads_available": os.cpu_count(),
        "command": "python benchmarks/bench_engines.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    print(markdown_table(rows))
    report = {"meta": meta, "results": rows}
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
