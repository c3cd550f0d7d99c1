"""The same training command under `accelerate launch` with 2 CPU processes (gloo): it trains with the data
split between the processes, saves complete checkpoints (one RNG state per process) and exports the model.

Note: `accelerate launch --cpu --num_processes 2` starts ONE process in accelerate 1.x: with `--cpu` it uses
its "simple" launcher, which only runs several CPU processes through `mpirun` (`--mpirun_hostfile`;
huggingface/accelerate#2741, #2492). The launcher that starts N local processes (torchrun) is the
`--multi_gpu` one; with no visible GPU, each process runs on the CPU and the processes talk over gloo.

This run found two bugs in training/train.py: its early `PartialState()` did not say "cpu", so on a CPU-only
machine accelerate did not see the launch as distributed before the Trainer set up, and both processes
trained and saved the tokenizer at once (one crashed renaming it); and the periodic validation got the
sentences that accelerate repeats to fill the processes' last batches (128 hypotheses for 16 references).
"""

import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import ROOT
from tiny_run import child_env, read_json, read_log

from training.train import complete_checkpoints

TINY = [
    "--max-steps",
    "4",
    "--save-steps",
    "2",
    "--eval-steps",
    "4",
    "--logging-steps",
    "2",
    "--warmup-steps",
    "2",
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
    "32",
    "--eval-samples",
    "8",
    "--final-eval-limit",
    "4",
    "--average-last",
    "2",
    "--threads",
    "1",
    "--test-splits",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_cpu_processes_train_and_checkpoint(data_dir, tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        "-m",
        "training.train",
        "--data",
        data_dir,
        "--output-dir",
        str(out),
        *TINY,
    ]
    env = child_env(CUDA_VISIBLE_DEVICES="", MASTER_ADDR="127.0.0.1")
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]

    ckpts = complete_checkpoints(str(out / "checkpoints"))
    assert [os.path.basename(p) for p in ckpts] == ["checkpoint-2", "checkpoint-4"]
    for path in ckpts:
        files = set(os.listdir(path))
        assert {"rng_state_0.pth", "rng_state_1.pth"} <= files, files  # one per process: 2 processes trained
        assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"} <= files
    state = read_json(ckpts[-1], "trainer_state.json")
    assert state["global_step"] == 4
    # 300 pairs in batches of 16 are 19 batches; split over 2 processes an epoch is 10 steps, not 19.
    assert state["epoch"] == pytest.approx(4 / 10)

    # The tokenizer was trained once (main process first), then loaded by the other process.
    output = result.stdout + result.stderr
    assert output.count("training a 400-token joint bpe vocabulary") == 1
    assert output.count("loading the tokenizer from") == 1
    # One log line per logging step (the main process writes the log), and one exported model.
    log = read_log(out)
    assert [e["step"] for e in log if "loss" in e] == [2, 4]
    assert (out / "model" / "model.safetensors").is_file()
    results = read_json(out / "model", "eval_results.json")
    assert list(results["results"]) == ["val"] and results["results"]["val"]["sentences"] == 4
    with open(out / "train_config.json", encoding="utf-8") as fh:
        assert json.load(fh)["max_steps"] == 4
