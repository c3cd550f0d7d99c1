"""The tiny training run that the training test modules share: its flags, the Multi30k slice it trains on, the
helpers that run commands in a child and read what they wrote, and `shared_tiny_run`, which trains and exports
once per session (the `trained_run` fixture in conftest.py) however many modules ask."""

import gzip
import hashlib
import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

from conftest import ROOT

MAX_STEPS, SAVE_STEPS, EVAL_STEPS, LOGGING_STEPS = 120, 30, 60, 5
EVAL_LIMIT = 16
# Small enough for seconds on a 2-core CPU, long enough that the loss visibly falls and the model writes words
# (for its first ~100 steps it tends to end every translation at once: empty outputs would make the BLEU
# checks hollow).
TINY_FLAGS = [
    "--max-steps",
    str(MAX_STEPS),
    "--save-steps",
    str(SAVE_STEPS),
    "--eval-steps",
    str(EVAL_STEPS),
    "--logging-steps",
    str(LOGGING_STEPS),
    "--warmup-steps",
    "8",
    "--learning-rate",
    "0.003",
    "--d-model",
    "32",
    "--ffn-dim",
    "64",
    "--encoder-layers",
    "1",
    "--decoder-layers",
    "1",
    "--attention-heads",
    "2",
    "--vocab-size",
    "400",
    "--max-train-samples",
    "300",
    "--batch-size",
    "16",
    "--max-length",
    "40",
    "--eval-samples",
    str(EVAL_LIMIT),
    "--final-eval-limit",
    str(EVAL_LIMIT),
    "--average-last",
    "2",
    "--keep-checkpoints",
    "10",
    "--threads",
    "1",
    "--seed",
    "7",
]
CHECKPOINT_STATE_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json")
EMPTY_PAIRS = 3  # pairs with an empty side that the slice below holds; the run must skip and count them


def child_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def train_command(output_dir, data, *extra):
    return [
        sys.executable,
        "-m",
        "training.train",
        "--data",
        str(data),
        "--output-dir",
        str(output_dir),
        *TINY_FLAGS,
        *extra,
    ]


def run(cmd, timeout=900, **kwargs):
    return subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout, **kwargs)


def read_log(output_dir):
    with open(os.path.join(output_dir, "log.jsonl"), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def read_json(*parts):
    with open(os.path.join(*parts), encoding="utf-8") as fh:
        return json.load(fh)


def snapshot(folder):
    """Every file under folder with its size, mtime and content hash."""
    out = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns, hashlib.sha256(fh.read()).hexdigest())
    return out


def make_tiny_data(folder, data_dir):
    """A Multi30k-layout folder: the first 306 training pairs with 3 empty-side pairs and one over-long pair
    mixed in; val, test and the official tokenised references are links to the real files."""
    os.makedirs(folder, exist_ok=True)
    from training.data import read_lines

    en = read_lines(os.path.join(data_dir, "train.en.gz"))[:306]
    de = read_lines(os.path.join(data_dir, "train.de.gz"))[:306]
    en[5], de[40], en[77], de[77] = "", "", "   ", ""  # pairs 5, 40, 77 have an empty side
    en[10], de[10] = " ".join([en[10]] * 6), " ".join([de[10]] * 6)  # far over --max-length 40 tokens
    for lang, lines in (("en", en), ("de", de)):
        with gzip.open(os.path.join(folder, f"train.{lang}.gz"), "wt", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        for split in ("val", "test_2016_flickr"):
            os.symlink(
                os.path.join(os.path.abspath(data_dir), f"{split}.{lang}.gz"),
                os.path.join(folder, f"{split}.{lang}.gz"),
            )
    os.symlink(os.path.join(os.path.abspath(data_dir), "tok"), os.path.join(folder, "tok"))
    return folder


_CACHE = {}


def shared_tiny_run(tmp_path_factory, data_dir):
    """Train + export once per session, even when several test modules ask (each gets a fixture of its own)."""
    if "run" not in _CACHE:
        base = tmp_path_factory.mktemp("tiny_run")
        data = make_tiny_data(str(base / "data"), data_dir)
        out, export = base / "run", base / "export"
        cmd = train_command(out, data, "--export-dir", str(export))
        start = time.time()
        result = run(cmd)
        _CACHE["run"] = SimpleNamespace(
            data=data,
            out=str(out),
            model=str(out / "model"),
            export=str(export),
            cmd=cmd,
            result=result,
            seconds=time.time() - start,
        )
    r = _CACHE["run"]
    assert r.result.returncode == 0, f"training failed:\n{r.result.stdout[-3000:]}\n{r.result.stderr[-5000:]}"
    return r
