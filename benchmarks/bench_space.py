"""How fast the Space answers, and whether it holds up under load.

1. Server time (in process, no HTTP): translation plus the attention data of a 15-word sentence, median
   and p90 over repeats, for the app's default decoding (the model's beam size) and for greedy search;
   also the time to draw the explorer's two pictures, and the Circuits tab's head importance (every head
   switched off alone, batched) for the same sentence with 1 thread and with torch's default threads.
2. Load: the app started as its own process (`python space/app.py`), N concurrent `gradio_client`
   clients each sending R `translate` requests; every answer is checked against the translation of the
   same sentence made before the load. Reports p50/p95 latency, errors, throughput, and the server's
   resident memory (RSS) after warm-up and after each round.
3. Mixed load: a fresh server, 16 clients x 20 requests each, half translations and half the other
   endpoints (`MIXED_CALLS`); p50/p95 per endpoint, the server's RSS before and after.

    python benchmarks/bench_space.py [--model PATH_OR_HUB_ID] [--quick] [--json results.json]
    python benchmarks/bench_space.py --model space/model --only-mixed     # only the mixed load

Prints a Markdown table (ready for space/README.md) and then the JSON of all numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACE = os.path.join(ROOT, "space")
sys.path.insert(0, SPACE)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_model import matmul_gflops  # noqa: E402

for _var in ("NO_PROXY", "no_proxy"):
    os.environ[_var] = ",".join(filter(None, [os.environ.get(_var, ""), "127.0.0.1,localhost"]))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

SENTENCE_15 = "A man in a blue shirt is standing on a ladder and cleaning the windows."  # 15 words
LOAD_SENTENCES = [
    SENTENCE_15,
    "The animal didn't cross the street because it was too tired.",
    "Two young children are playing with a ball in the park.",
    "A woman in a red dress is walking her dog along the beach.",
]
TARGET_MS = 300.0
MIXED_TRANSLATE_P95_MS = 3000.0  # `/translate` under 16 clients x 20 mixed requests, 2 cores
IMPORTANCE_TARGET_S = 2.0  # head importance of a 15-word sentence with the shipped model


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MiB (Linux /proc; psutil elsewhere if installed)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except Exception:  # noqa: BLE001 - memory is reported as unknown rather than failing the benchmark
        return None


# --- 1. server time ------------------------------------------------------------------------------------
def measure_server_time(bundle, sentence: str = SENTENCE_15, repeats: int = 20, num_beams: int | None = None) -> dict:
    """Wall time of `bundle.translate(..., with_attention=True)`: what one `translate` request computes."""
    for _ in range(2):  # warm-up: first calls allocate and pick kernels
        bundle.translate(sentence, num_beams=num_beams)
    total, generate, attention = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = bundle.translate(sentence, num_beams=num_beams)
        total.append((time.perf_counter() - t0) * 1000)
        generate.append(result.generate_ms)
        attention.append(result.attention_ms)
    return {
        "num_beams": result.num_beams,
        "words": len(sentence.split()),
        "source_tokens": len(result.source.input_ids),
        "target_tokens": len(result.decoder_ids),
        "repeats": repeats,
        "median_ms": statistics.median(total),
        "p90_ms": percentile(total, 90),
        "generate_median_ms": statistics.median(generate),
        "attention_median_ms": statistics.median(attention),
        "translation": result.text,
    }


def measure_pictures(bundle, sentence: str = SENTENCE_15, repeats: int = 5) -> dict:
    """Time to draw the explorer (heatmap, head grid, links) for one selection."""
    import app

    data = bundle.translate(sentence).attention
    times = []
    for i in range(repeats):
        family = ("encoder", "cross", "decoder")[i % 3]
        t0 = time.perf_counter()
        app.explorer_outputs(data, family, "1", "mean", None)
        times.append((time.perf_counter() - t0) * 1000)
    return {"repeats": repeats, "median_ms": statistics.median(times)}


def measure_head_importance(
    bundle, sentence: str = SENTENCE_15, repeats: int = 5, threads: tuple[int, ...] = (1,)
) -> list[dict]:
    """Wall time of the Circuits tab's head importance (what one `head_importance` request computes) on the
    Space's translation of `sentence`, once per thread count; median over `repeats` after one warm-up.

    The fp32 matmul rate measured just before says how much of the CPU the run got (other processes).
    """
    import torch

    from tabs import circuits_tab

    pair = circuits_tab.pair_from_api(bundle, sentence)
    previous = torch.get_num_threads()
    rows = []
    try:
        for n_threads in dict.fromkeys(threads):  # in order, without repeats
            gflops = matmul_gflops(n_threads, n=512, repeats=5)  # also sets the thread count
            circuits_tab.importance(bundle, pair)  # warm-up
            total, ablations = [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                result = circuits_tab.importance(bundle, pair)
                total.append(time.perf_counter() - t0)
                ablations.append(result.seconds)
            rows.append(
                {
                    "threads": n_threads,
                    "words": len(sentence.split()),
                    "source_tokens": len(result.source_tokens),
                    "target_tokens": len(result.translation_tokens),
                    "heads": len(result.ranking),
                    "repeats": repeats,
                    "median_s": statistics.median(total),
                    "max_s": max(total),
                    "ablations_median_s": statistics.median(ablations),
                    "matmul_gflops": gflops,
                    "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                }
            )
    finally:
        torch.set_num_threads(previous)
    return rows


# --- 2. load ---------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, log_path: str, timeout: float = 300.0) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            with open(log_path, encoding="utf-8", errors="replace") as fh:
                tail = fh.read()[-3000:]
            raise SystemExit(f"bench_space: the app exited with code {proc.returncode} before serving:\n{tail}")
        try:
            with opener.open(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"bench_space: the app did not answer at {url} within {timeout:.0f} s (log: {log_path})")


def start_server(
    model: str | None,
    port: int | None = None,
    threads: int | None = None,
    app: str = os.path.join(SPACE, "app.py"),
    engine: str | None = None,
) -> tuple[subprocess.Popen, str, str]:
    """`python space/app.py` (or another `app`) on a free local port; returns (process, url, log path)."""
    port = port or _free_port()
    cmd = [sys.executable, app, "--host", "127.0.0.1", "--port", str(port)]
    if model:
        cmd += ["--model", model]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if engine:
        cmd += ["--engine", engine]
    log = tempfile.NamedTemporaryFile("w", prefix="bench_space_server_", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}/"
    _wait_until_up(url, proc, log.name)
    return proc, url, log.name


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def load_test(
    url: str,
    clients: int = 8,
    requests: int = 25,
    rounds: int = 1,
    pid: int | None = None,
    sentences: list[str] = LOAD_SENTENCES,
) -> dict:
    """`clients` concurrent gradio_client clients x `requests` translate calls each, `rounds` times."""
    from gradio_client import Client

    warm = Client(url, verbose=False)
    expected = {s: warm.predict(s, api_name="/translate")[0] for s in sentences}  # also warms the server
    rss = {"after_warmup": rss_mb(pid) if pid else None}

    def one_client(index: int) -> tuple[list[float], list[str]]:
        latencies, errors = [], []
        try:
            client = Client(url, verbose=False)
        except Exception as err:  # noqa: BLE001 - every failure is counted and reported
            return [], [f"client {index}: could not connect: {err!r}"] * requests
        for i in range(requests):
            sentence = sentences[(index + i) % len(sentences)]
            t0 = time.perf_counter()
            try:
                answer = client.predict(sentence, api_name="/translate")
            except Exception as err:  # noqa: BLE001
                errors.append(f"client {index} request {i}: {err!r}")
                continue
            latencies.append((time.perf_counter() - t0) * 1000)
            if answer[0] != expected[sentence]:
                errors.append(f"client {index} request {i}: wrong answer {answer[0]!r}")
        return latencies, errors

    all_latencies, all_errors, wall = [], [], 0.0
    for r in range(rounds):
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            for latencies, errors in pool.map(one_client, range(clients)):
                all_latencies += latencies
                all_errors += errors
        wall += time.perf_counter() - t0
        rss[f"after_round_{r + 1}"] = rss_mb(pid) if pid else None
    total = clients * requests * rounds
    return {
        "clients": clients,
        "requests_per_client": requests,
        "rounds": rounds,
        "requests": total,
        "answered_correctly": total - len(all_errors),
        "errors": len(all_errors),
        "error_samples": all_errors[:5],
        "p50_ms": percentile(all_latencies, 50),
        "p95_ms": percentile(all_latencies, 95),
        "max_ms": max(all_latencies) if all_latencies else float("nan"),
        "throughput_rps": len(all_latencies) / wall if wall else float("nan"),
        "rss_mb": rss,
    }


# The mixed load: each client walks through these calls in turn (from a different start), so half of all
# requests are translations and the other half are spread over the other endpoints.
MIXED_CALLS = [
    ("/translate", lambda s: (s,)),
    ("/attention", lambda s: (s,)),
    ("/translate", lambda s: (s, 1)),
    ("/walkthrough", lambda s: (s, "cross", 0, 0, "", "")),
    ("/translate", lambda s: (s,)),
    ("/head_importance", lambda s: (s,)),
    ("/translate", lambda s: (s, 1)),
    ("/logit_lens", lambda s: (s,)),
    ("/translate", lambda s: (s,)),
    ("/ablate", lambda s: (s, ["cross L1 H1"])),
]


def mixed_load_test(
    url: str,
    clients: int = 16,
    requests: int = 20,
    pid: int | None = None,
    sentences: list[str] = LOAD_SENTENCES,
    calls=MIXED_CALLS,
) -> dict:
    """`clients` concurrent clients x `requests` calls each, mixed over the endpoints (`calls`); every
    translation is checked against the one made before the load. p50/p95 per endpoint, RSS before/after."""
    from gradio_client import Client

    warm = Client(url, verbose=False)
    expected = {
        (s, args[1:]): warm.predict(*args, api_name="/translate")[0]
        for s in sentences
        for name, make in calls
        if name == "/translate"
        for args in [make(s)]
    }
    for name, make in calls:  # every endpoint once, so that warm-up allocations are not counted
        warm.predict(*make(sentences[0]), api_name=name)
    rss_before = rss_mb(pid) if pid else None

    # Every client connects (reads the app's config and API) before the load starts: only requests are timed.
    with ThreadPoolExecutor(max_workers=clients) as pool:
        connected = list(pool.map(lambda _: Client(url, verbose=False), range(clients)))
    start = threading.Barrier(clients)

    def one_client(index: int) -> tuple[list[tuple[str, float]], list[str]]:
        timings, errors = [], []
        client = connected[index]
        start.wait()
        for i in range(requests):
            name, make = calls[(index + i) % len(calls)]
            sentence = sentences[(index + i) % len(sentences)]
            args = make(sentence)
            t0 = time.perf_counter()
            try:
                answer = client.predict(*args, api_name=name)
            except Exception as err:  # noqa: BLE001 - every failure is counted and reported
                errors.append(f"client {index} request {i} {name}: {err!r}")
                continue
            timings.append((name, (time.perf_counter() - t0) * 1000))
            if name == "/translate" and answer[0] != expected[(sentence, args[1:])]:
                errors.append(f"client {index} request {i}: wrong translation {answer[0]!r}")
            elif isinstance(answer, dict) and "error" in answer:
                errors.append(f"client {index} request {i} {name}: {answer['error']}")
        return timings, errors

    timings, all_errors = [], []
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for client_timings, errors in pool.map(one_client, range(clients)):
            timings += client_timings
            all_errors += errors
    wall = time.perf_counter() - t0
    endpoints = {}
    for name in dict.fromkeys(name for name, _ in calls):
        latencies = [ms for n, ms in timings if n == name]
        endpoints[name] = {
            "requests": len(latencies),
            "p50_ms": percentile(latencies, 50),
            "p95_ms": percentile(latencies, 95),
        }
    total = clients * requests
    return {
        "clients": clients,
        "requests_per_client": requests,
        "requests": total,
        "answered_correctly": total - len(all_errors),
        "errors": len(all_errors),
        "error_samples": all_errors[:5],
        "wall_s": wall,
        "throughput_rps": len(timings) / wall if wall else float("nan"),
        "endpoints": endpoints,
        "rss_mb": {"before": rss_before, "after": rss_mb(pid) if pid else None},
    }


# --- a stand-in model for smoke runs ---------------------------------------------------------------------
def make_smoke_model(folder: str) -> str:
    """A tiny untrained model with a tokenizer, saved like a Hub folder: lets `--quick` run on a fresh clone
    before space/model/ exists. Its numbers say nothing about the shipped model."""
    sys.path.insert(0, ROOT)
    import torch

    from configuration import TransformerConfig
    from modeling import TransformerForConditionalGeneration
    from training.tokenizer import train_tokenizer

    texts = LOAD_SENTENCES * 4 + ["Ein Mann steht auf einer Leiter.", "Zwei Kinder spielen im Park."] * 4
    tokenizer = train_tokenizer(texts, vocab_size=400, model_max_length=64)
    torch.manual_seed(0)
    config = TransformerConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
    )
    model = TransformerForConditionalGeneration(config).eval()
    model.generation_config.max_length = 32
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# --- report ----------------------------------------------------------------------------------------------
def markdown_table(results: dict) -> str:
    def fmt(value, unit=""):
        return "n/a" if value is None else (f"{value:.0f}{unit}" if isinstance(value, float) else f"{value}{unit}")

    lines = ["| measurement | value |", "|---|---|"]
    for timing in results.get("server_time", []):
        verdict = "✓" if timing["median_ms"] < TARGET_MS else "✗"
        lines.append(
            f"| translation + attention data, {timing['words']}-word sentence, beam {timing['num_beams']} "
            f"(median of {timing['repeats']}) | {fmt(timing['median_ms'], ' ms')} {verdict} "
            f"(generate {fmt(timing['generate_median_ms'], ' ms')}, attention {fmt(timing['attention_median_ms'], ' ms')};"
            f" p90 {fmt(timing['p90_ms'], ' ms')}) |"
        )
    if "pictures" in results:
        lines.append(
            f"| explorer pictures (heatmap + head grid + links, median) | {fmt(results['pictures']['median_ms'], ' ms')} |"
        )
    for timing in results.get("head_importance", []):
        verdict = "✓" if timing["median_s"] < IMPORTANCE_TARGET_S else "✗"
        load = timing["load_average_1min"]
        lines.append(
            f"| Circuits head importance ({timing['heads']} heads off one at a time), {timing['words']}-word "
            f"sentence, {timing['threads']} thread{'s' if timing['threads'] != 1 else ''} (median of "
            f"{timing['repeats']}) | {timing['median_s']:.2f} s {verdict} (max {timing['max_s']:.2f} s; "
            f"matmul {timing['matmul_gflops']:.0f} GFLOP/s"
            + (f", load average {load:.1f}" if load is not None else "")
            + ") |"
        )
    circuit = results.get("circuit_graph")
    if circuit:
        marks = [
            "✓" if value < target else "✗"
            for value, target in zip((circuit["scores_median_s"], circuit["curve_median_s"]), CIRCUIT_TARGETS_S)
        ]
        lines.append(
            f"| Circuit graph, {circuit['source_tokens']}-token pair, {circuit['edges']} edges: EAP-IG scores "
            f"(5 steps) / {circuit['curve_points']}-point faithfulness curve (median of {circuit['repeats']}) "
            f"| {circuit['scores_median_s']:.2f} s {marks[0]} / {circuit['curve_median_s']:.2f} s {marks[1]} |"
        )
    load = results.get("load")
    if load:
        lines.append(
            f"| load: {load['clients']} clients × {load['requests_per_client']} requests × {load['rounds']} round(s) "
            f"| {load['answered_correctly']}/{load['requests']} correct, {load['errors']} errors |"
        )
        lines.append(f"| load latency p50 / p95 | {fmt(load['p50_ms'], ' ms')} / {fmt(load['p95_ms'], ' ms')} |")
        lines.append(f"| load throughput | {load['throughput_rps']:.1f} requests/s |")
        rss = " → ".join(f"{fmt(v, ' MiB')} ({k.replace('_', ' ')})" for k, v in load["rss_mb"].items())
        lines.append(f"| server RSS | {rss} |")
    mixed = results.get("mixed_load")
    if mixed:
        lines.append(
            f"| mixed load: {mixed['clients']} clients × {mixed['requests_per_client']} requests over "
            f"{len(mixed['endpoints'])} endpoints | {mixed['answered_correctly']}/{mixed['requests']} correct, "
            f"{mixed['errors']} errors, {mixed['throughput_rps']:.1f} requests/s |"
        )
        for name, row in mixed["endpoints"].items():
            verdict = (" ✓" if row["p95_ms"] < MIXED_TRANSLATE_P95_MS else " ✗") if name == "/translate" else ""
            lines.append(
                f"| mixed load `{name}` ({row['requests']} requests) p50 / p95 | {fmt(row['p50_ms'], ' ms')} / "
                f"{fmt(row['p95_ms'], ' ms')}{verdict} |"
            )
        rss = mixed["rss_mb"]
        lines.append(
            f"| mixed load server RSS | {fmt(rss['before'], ' MiB')} (before) → {fmt(rss['after'], ' MiB')} (after) |"
        )
    lines.append(f"| machine | {results['machine']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model folder or Hub id (default: $MODEL_ID, else space/model/)")
    parser.add_argument("--quick", action="store_true", help="smoke mode: 3 repeats, 2 clients x 3 requests, 1 round")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=2, help="load rounds; RSS is read after each")
    parser.add_argument("--mixed-clients", type=int, default=16, help="clients of the mixed load (0: skip it)")
    parser.add_argument("--mixed-requests", type=int, default=20, help="requests per client of the mixed load")
    parser.add_argument("--only-mixed", action="store_true", help="only the mixed load (no server time, no load)")
    parser.add_argument(
        "--app",
        default=os.path.join(SPACE, "app.py"),
        help="the app to serve (default: this checkout's space/app.py; another checkout's to compare)",
    )
    parser.add_argument("--skip-load", action="store_true", help="only the in-process server time")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads, here and in the server (default 1, as the app; 0 = torch's choice)",
    )
    parser.add_argument(
        "--engine",
        default="auto",
        choices=("auto", "torch", "ctranslate2"),
        help="what decodes the translations, here and in the server (as the app's --engine)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.clients, args.requests, args.rounds = 3, 2, 3, 1
        args.mixed_clients, args.mixed_requests = 2, 5

    from translation_engine import ModelSourceError, load_bundle, resolve_model_source

    smoke_dir = None
    try:
        try:
            source = resolve_model_source(args.model)
        except ModelSourceError as err:
            if not (args.quick and args.model is None and not os.environ.get("MODEL_ID")):
                raise
            smoke_dir = tempfile.mkdtemp(prefix="bench_space_smoke_model_")
            print(
                f"bench_space: {err}\n--quick goes on with a tiny untrained stand-in model; its numbers say "
                "nothing about the shipped model.",
                file=sys.stderr,
            )
            source = resolve_model_source(make_smoke_model(smoke_dir))
        bundle = load_bundle(source, engine=args.engine)
    except ModelSourceError as err:
        print(f"bench_space: {err}", file=sys.stderr)
        return 2
    try:
        return run(args, source, bundle, smoke=smoke_dir is not None)
    finally:
        if smoke_dir:
            import shutil

            shutil.rmtree(smoke_dir, ignore_errors=True)


CIRCUIT_PAIR = (SENTENCE_15, SENTENCE_15.replace("blue", "red"))  # one word changed, same token length
CIRCUIT_TARGETS_S = (1.0, 10.0)  # edge scores of one pair, and a ~20-point faithfulness curve


def measure_circuit_graph(bundle, repeats: int = 5) -> dict:
    """Wall time of the Circuit graph tab's two computations on the 15-word pair (blue -> red shirt): EAP-IG edge
    scores (5 steps; metric log p of the clean translation, the same passes as a target's logit difference) and
    the 20-point faithfulness curve; median over `repeats` after one warm-up (what one `/circuit_graph` request
    computes, besides the two translations)."""
    from encdec_lens import circuit_discovery as cd
    from tabs import circuit_graph_tab
    from tabs.pair_views import pair_from_api

    clean, corrupted = (bundle.prepare(s).input_ids for s in CIRCUIT_PAIR)
    translation = pair_from_api(bundle, CIRCUIT_PAIR[0]).target_ids
    task_args = dict(method="eap-ig", steps=5)
    cd.edge_attribution(bundle.model, clean, corrupted, translation, **task_args)  # warm-up
    scores_s, curve_s = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        scores = cd.edge_attribution(bundle.model, clean, corrupted, translation, **task_args)
        t1 = time.perf_counter()
        cd.faithfulness_curve(bundle.model, scores, circuit_graph_tab.k_grid(len(scores.scores)))
        curve_s.append(time.perf_counter() - t1)
        scores_s.append(t1 - t0)
    return {
        "edges": len(scores.scores),
        "source_tokens": len(clean),
        "repeats": repeats,
        "scores_median_s": statistics.median(scores_s),
        "curve_median_s": statistics.median(curve_s),
        "curve_points": len(circuit_graph_tab.k_grid(len(scores.scores))),
    }


def run(args, source, bundle, smoke: bool = False) -> int:
    import torch

    default_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {
        "model": "tiny untrained stand-in (no space/model/)" if smoke else source.ref,
        "quick": args.quick,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}",
        "engine": bundle.engine,
        "target_ms": TARGET_MS,
        "server_time": [],
    }
    if not args.only_mixed:
        beams = [bundle.default_num_beams] + ([1] if bundle.default_num_beams != 1 else [])
        for num_beams in beams:
            results["server_time"].append(measure_server_time(bundle, repeats=args.repeats, num_beams=num_beams))
        results["pictures"] = measure_pictures(bundle, repeats=max(3, args.repeats // 4))
        results["importance_target_s"] = IMPORTANCE_TARGET_S
        results["head_importance"] = measure_head_importance(
            bundle, repeats=max(2, args.repeats // 4), threads=(1, default_threads)
        )
        results["circuit_graph"] = measure_circuit_graph(bundle, repeats=max(2, args.repeats // 4))
    if not args.skip_load and not args.only_mixed:
        results["load"] = with_server(
            args, source, lambda url, pid: load_test(url, args.clients, args.requests, args.rounds, pid=pid), results
        )
    if not args.skip_load and args.mixed_clients:
        results["mixed_load"] = with_server(
            args,
            source,
            lambda url, pid: mixed_load_test(url, args.mixed_clients, args.mixed_requests, pid=pid),
            results,
        )

    print(markdown_table(results))
    print(json.dumps(results, indent=2, ensure_ascii=False))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2, ensure_ascii=False)
    failed = any(results.get(name, {}).get("errors") for name in ("load", "mixed_load"))
    return 1 if failed else 0


def with_server(args, source, measure, results: dict) -> dict:
    """`measure(url, pid)` against a fresh `python space/app.py` (or `--app`); its log is kept on errors."""
    proc, url, log_path = start_server(
        source.ref, threads=args.threads, app=args.app, engine=None if args.engine == "auto" else args.engine
    )
    try:
        measured = measure(url, proc.pid)
    finally:
        stop_server(proc)
    if measured["errors"]:
        results.setdefault("server_logs", []).append(log_path)  # kept for a look at what went wrong
    else:
        os.remove(log_path)
    return measured


if __name__ == "__main__":
    sys.exit(main())
