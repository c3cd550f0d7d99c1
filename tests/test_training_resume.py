"""Kill a training run with SIGKILL once it has a complete checkpoint, then `--resume`: it continues from
that checkpoint with its optimizer, scheduler and RNG state (the resumed losses equal those of the same run
done without interruption), finishes at max_steps, and loses nothing that was finished. Incomplete
checkpoint folders (a kill while saving) are never resumed from."""

import json
import os
import signal
import subprocess
import time

import pytest
from conftest import ROOT
from test_training_e2e import (
    CHECKPOINT_STATE_FILES, LOGGING_STEPS, MAX_STEPS, SAVE_STEPS, child_env, read_json, read_log, run,
    shared_tiny_run, snapshot, train_command,
)

from training.train import complete_checkpoints


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_dir):
    return shared_tiny_run(tmp_path_factory, data_dir)


def write_checkpoint(folder, files):
    os.makedirs(folder)
    for name, content in files.items():
        with open(os.path.join(folder, name), "wb") as fh:
            fh.write(content)


def test_complete_checkpoints_ignores_half_written_folders(tmp_path):
    full = {name: b"x" for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth")}
    state = json.dumps({"global_step": 5}).encode()
    write_checkpoint(tmp_path / "checkpoint-5", {**full, "trainer_state.json": state})
    write_checkpoint(tmp_path / "checkpoint-40", {**full, "trainer_state.json": json.dumps({"global_step": 40}).encode()})
    write_checkpoint(tmp_path / "checkpoint-999", {"model.safetensors": b"\x00" * 10})  # killed while saving
    write_checkpoint(tmp_path / "checkpoint-1000", {**full})  # no trainer_state.json yet (it is written last)
    write_checkpoint(tmp_path / "checkpoint-1001", {**full, "trainer_state.json": state[:7]})  # cut mid-write
    write_checkpoint(tmp_path / "checkpoint-x", {**full, "trainer_state.json": state})  # not a step
    write_checkpoint(tmp_path / "checkpoint-1002.partial", {**full, "trainer_state.json": state})
    assert complete_checkpoints(str(tmp_path)) == [str(tmp_path / "checkpoint-5"), str(tmp_path / "checkpoint-40")]
    assert complete_checkpoints(str(tmp_path / "missing")) == []


@pytest.mark.slow
def test_sigkill_then_resume_continues_from_last_complete_checkpoint(trained_run, tmp_path):
    out = tmp_path / "run"
    ckpt_dir = str(out / "checkpoints")
    cmd = train_command(out, trained_run.data)
    with open(tmp_path / "first.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 900
            while not complete_checkpoints(ckpt_dir):
                assert proc.poll() is None, "the run ended before it saved a checkpoint:\n" + \
                    (tmp_path / "first.log").read_text()[-3000:]
                assert time.time() < deadline, "no checkpoint in time"
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed: nothing was tested"

    done = complete_checkpoints(ckpt_dir)
    last = done[-1]
    step = read_json(last, "trainer_state.json")["global_step"]
    assert step % SAVE_STEPS == 0 and SAVE_STEPS <= step < MAX_STEPS
    for name in CHECKPOINT_STATE_FILES:  # what resuming needs, besides the weights
        assert os.path.getsize(os.path.join(last, name)) > 0, name
    assert not (out / "model").exists()
    tokenizer_before = (out / "tokenizer" / "tokenizer.json").read_bytes()
    log_before = read_log(out)
    finished_before = {p: snapshot(p) for p in done}
    # A checkpoint that a kill interrupted while it was being written: never resumed from.
    os.makedirs(os.path.join(ckpt_dir, "checkpoint-999"))
    with open(os.path.join(ckpt_dir, "checkpoint-999", "model.safetensors"), "wb") as fh:
        fh.write(b"\x00" * 100)
    assert complete_checkpoints(ckpt_dir) == done

    result = run(cmd + ["--resume"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert f"resuming from {last}" in result.stdout
    assert "loading the tokenizer from" in result.stdout and "training a 400-token" not in result.stdout

    # It continued from the checkpoint's step, not from 0, and ran to max_steps.
    log = read_log(out)
    assert log[: len(log_before)] == log_before  # the killed run's log is kept
    new = log[len(log_before):]
    new_losses = [(e["step"], e["loss"]) for e in new if "loss" in e]
    assert [s for s, _ in new_losses] == list(range(step + LOGGING_STEPS, MAX_STEPS + 1, LOGGING_STEPS))
    assert min(e["step"] for e in new) > step
    assert new[0]["time_s"] >= log_before[-1]["time_s"] if log_before else True  # training time adds up
    final_state = read_json(ckpt_dir, f"checkpoint-{MAX_STEPS}", "trainer_state.json")
    assert final_state["global_step"] == MAX_STEPS
    assert [os.path.basename(p) for p in complete_checkpoints(ckpt_dir)] == \
        [f"checkpoint-{s}" for s in range(SAVE_STEPS, MAX_STEPS + 1, SAVE_STEPS)]

    # Optimizer moments, scheduler position, data order and dropout RNG were restored: the resumed steps
    # reproduce the losses of the same run done without interruption.
    reference = {e["step"]: e["loss"] for e in read_log(trained_run.out) if "loss" in e}
    for s, loss in new_losses:
        assert loss == pytest.approx(reference[s], rel=1e-4, abs=1e-4), (s, loss, reference[s])

    # Nothing finished was lost: earlier checkpoints untouched, tokenizer not retrained, model exported.
    for path, files in finished_before.items():
        assert snapshot(path) == files, path
    assert (out / "tokenizer" / "tokenizer.json").read_bytes() == tokenizer_before
    assert (out / "checkpoints" / "checkpoint-999").is_dir()  # not ours to delete
    assert (out / "model" / "model.safetensors").is_file()
    results = read_json(out / "model", "eval_results.json")
    assert "checkpoint-999" not in results["chosen"]

    # Resuming a finished run does no training and exports again.
    again = run(cmd + ["--resume"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert read_log(out) == log


@pytest.mark.slow
def test_overwrite_output_dir_starts_over(trained_run, tmp_path):
    """--overwrite-output-dir really starts over: the old tokenizer (another vocabulary size), checkpoints and
    log go; without it (tested in test_training_e2e.py) the folder is refused."""
    from training.data import read_lines
    from training.tokenizer import train_tokenizer

    out = tmp_path / "run"
    old_tok = train_tokenizer(read_lines(os.path.join(trained_run.data, "val.en.gz"))[:300], vocab_size=500)
    old_tok.save_pretrained(out / "tokenizer")
    write_checkpoint(out / "checkpoints" / "checkpoint-999", {
        **{name: b"old" for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth")},
        "trainer_state.json": json.dumps({"global_step": 999}).encode(),
    })
    (out / "log.jsonl").write_text(json.dumps({"step": 999, "time_s": 86400.0, "loss": 1.0}) + "\n")
    flags = [a for a in train_command(out, trained_run.data)]
    for flag, value in (("--max-steps", "2"), ("--save-steps", "2"), ("--eval-steps", "2"), ("--logging-steps", "1")):
        flags[flags.index(flag) + 1] = value
    result = run(flags + ["--overwrite-output-dir", "--test-splits"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "training a 400-token joint bpe vocabulary" in result.stdout
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(out / "tokenizer")) == 400
    assert [os.path.basename(p) for p in complete_checkpoints(str(out / "checkpoints"))] == ["checkpoint-2"]
    log = read_log(out)
    assert [e["step"] for e in log if "loss" in e] == [1, 2]
    assert all(e["time_s"] < 86400 for e in log)
    assert read_json(out / "model", "eval_results.json")["train_seconds"] < 86400


@pytest.mark.slow
def test_resume_with_more_steps_and_a_cooldown(trained_run, tmp_path):
    """The shipped model's recipe: a finished run is resumed with a larger --max-steps and a --cooldown-steps
    that starts exactly where it stopped. The learning rate then falls in a straight line from where eq. 3 had
    left it to zero at the new max_steps, and the finished run's checkpoints and log stay as they were."""
    import shutil

    from training.train import learning_rate_factor

    out = tmp_path / "run"
    shutil.copytree(trained_run.out, out, symlinks=True, ignore=shutil.ignore_patterns("model"))
    before = {p: snapshot(p) for p in complete_checkpoints(str(out / "checkpoints"))}
    log_before = read_log(out)
    flags = train_command(out, trained_run.data)
    warmup = float(flags[flags.index("--warmup-steps") + 1])
    peak = float(flags[flags.index("--learning-rate") + 1])
    extra, total = 30, MAX_STEPS + 30
    flags[flags.index("--max-steps") + 1] = str(total)
    result = run(flags + ["--cooldown-steps", str(extra), "--resume", "--test-splits"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert f"resuming from {out / 'checkpoints' / f'checkpoint-{MAX_STEPS}'}" in result.stdout

    log = read_log(out)
    assert log[: len(log_before)] == log_before
    lrs = {e["step"]: e["learning_rate"] for e in log[len(log_before):] if "learning_rate" in e}
    assert sorted(lrs) == list(range(MAX_STEPS + LOGGING_STEPS, total + 1, LOGGING_STEPS))
    # The rate logged at step s is the one its update used: the schedule's value after s - 1 scheduler steps.
    at_start = peak * learning_rate_factor(MAX_STEPS, warmup_steps=int(warmup), max_steps=total)
    for step, lr in lrs.items():
        assert lr == pytest.approx(at_start * (total - step + 1) / extra, rel=1e-6, abs=1e-12), step
    assert lrs[total] == pytest.approx(at_start / extra)  # the last update; the next rate would be 0
    # The run before the cool-down followed eq. 3 unchanged.
    old = {e["step"]: e["learning_rate"] for e in log_before if "learning_rate" in e}
    assert len(old) >= MAX_STEPS // LOGGING_STEPS
    for step, lr in old.items():
        assert lr == pytest.approx(peak * learning_rate_factor(step - 1, warmup_steps=int(warmup), max_steps=total),
                                   rel=1e-6), step
    for path, files in before.items():
        if os.path.isdir(path):  # older ones may be rotated out by --keep-checkpoints; the kept ones are intact
            assert snapshot(path) == files, path
    assert read_json(out / "checkpoints", f"checkpoint-{total}", "trainer_state.json")["global_step"] == total
    assert (out / "model" / "model.safetensors").is_file()
    card = (out / "model" / "README.md").read_text(encoding="utf-8")
    assert f"{total} steps" in card and f"falling linearly to zero over the last {extra}" in card
