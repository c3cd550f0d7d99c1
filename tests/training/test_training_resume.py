"""Kill a training run with SIGKILL once it has a complete checkpoint, then `--resume`: it continues from
that checkpoint with its optimizer, scheduler and RNG state (the resumed losses equal those of the same run
done without interruption), finishes at max_steps, and loses nothing that was finished. Incomplete
checkpoint folders (a kill while saving) are never resumed from."""

import json
import os
import re
import signal
import subprocess
import time

import pytest
from conftest import ROOT
from tiny_run import (
    CHECKPOINT_STATE_FILES,
    LOGGING_STEPS,
    MAX_STEPS,
    SAVE_STEPS,
    child_env,
    read_json,
    read_log,
    run,
    snapshot,
    train_command,
)

from training.train import checkpoint_problem, complete_checkpoints, scan_checkpoints


def write_checkpoint(folder, files):
    os.makedirs(folder)
    for name, content in files.items():
        with open(os.path.join(folder, name), "wb") as fh:
            fh.write(content)


def test_complete_checkpoints_ignores_half_written_folders(tmp_path):
    full = {name: b"x" for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth")}
    state = json.dumps({"global_step": 5}).encode()
    write_checkpoint(tmp_path / "checkpoint-5", {**full, "trainer_state.json": state})
    write_checkpoint(
        tmp_path / "checkpoint-40", {**full, "trainer_state.json": json.dumps({"global_step": 40}).encode()}
    )
    write_checkpoint(tmp_path / "checkpoint-999", {"model.safetensors": b"\x00" * 10})  # killed while saving
    write_checkpoint(tmp_path / "checkpoint-1000", {**full})  # no trainer_state.json yet (it is written last)
    write_checkpoint(tmp_path / "checkpoint-1001", {**full, "trainer_state.json": state[:7]})  # cut mid-write
    write_checkpoint(tmp_path / "checkpoint-x", {**full, "trainer_state.json": state})  # not a step
    write_checkpoint(tmp_path / "checkpoint-1002.partial", {**full, "trainer_state.json": state})
    assert complete_checkpoints(str(tmp_path)) == [str(tmp_path / "checkpoint-5"), str(tmp_path / "checkpoint-40")]
    assert complete_checkpoints(str(tmp_path / "missing")) == []
    # Each incomplete one, with the reason (logged when --resume passes over it).
    _, incomplete = scan_checkpoints(str(tmp_path))
    assert incomplete == [
        (
            str(tmp_path / "checkpoint-999"),
            "incomplete, no trainer_state.json, optimizer.pt, scheduler.pt (a save was interrupted)",
        ),
        (str(tmp_path / "checkpoint-1000"), "incomplete, no trainer_state.json (a save was interrupted)"),
        (
            str(tmp_path / "checkpoint-1001"),
            "trainer_state.json cannot be read (Unterminated string starting at: line 1 column 2 (char 1))",
        ),
    ]


def write_loadable_checkpoint(folder, step, rng=True):
    """A checkpoint of real (tiny) files, as the Trainer writes them."""
    import torch
    from safetensors.torch import save_file

    os.makedirs(folder)
    save_file({"weight": torch.ones(64, 64)}, os.path.join(folder, "model.safetensors"))
    torch.save(
        {
            "state": {0: {"step": torch.tensor(float(step)), "exp_avg": torch.zeros(4, 4)}},
            "param_groups": [{"lr": 1e-3, "params": [0]}],
        },
        os.path.join(folder, "optimizer.pt"),
    )
    torch.save({"last_epoch": step, "_step_count": step + 1}, os.path.join(folder, "scheduler.pt"))
    if rng:
        torch.save({"cpu": torch.get_rng_state()}, os.path.join(folder, "rng_state.pth"))
    with open(os.path.join(folder, "trainer_state.json"), "w", encoding="utf-8") as fh:
        json.dump({"global_step": step}, fh)
    return str(folder)


def cut(path):
    """Truncate a file to half its size, as a full disk or a crash mid-copy leaves it."""
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)


@pytest.mark.parametrize(
    "name,message",
    [
        ("model.safetensors", r"^model\.safetensors cannot be read \(.*incomplete metadata, file not fully covered\)$"),
        (
            "optimizer.pt",
            r"^optimizer\.pt cannot be read \(PytorchStreamReader failed reading zip archive: failed finding "
            r"central directory.*\)$",
        ),
        ("scheduler.pt", r"^scheduler\.pt cannot be read \(PytorchStreamReader failed reading zip archive"),
        ("rng_state.pth", r"^rng_state\.pth cannot be read \(File is not a zip file\)$"),
    ],
)
def test_checkpoint_problem_names_the_cut_file(tmp_path, name, message):
    path = write_loadable_checkpoint(tmp_path / "checkpoint-10", 10)
    assert checkpoint_problem(path) is None
    cut(os.path.join(path, name))
    assert re.search(message, checkpoint_problem(path)), checkpoint_problem(path)
    # Averaging needs the weights only.
    assert (checkpoint_problem(path, weights_only=True) is None) == (name != "model.safetensors")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_checkpoint_whose_weights_are_not_finite_is_never_resumed_or_averaged(tmp_path, caplog, bad):
    """A diverged run's checkpoint loads without error: it is passed over by --resume and by the final choice
    (averaging, best, last) alike, saying why."""
    import torch
    from safetensors.torch import save_file

    from training.export import loadable_checkpoints
    from training.train import newest_loadable_checkpoint

    ckpts = tmp_path / "checkpoints"
    good = write_loadable_checkpoint(ckpts / "checkpoint-10", 10)
    poisoned = write_loadable_checkpoint(ckpts / "checkpoint-20", 20)
    weight = torch.ones(64, 64)
    weight[3, 5] = bad
    save_file({"bias": torch.zeros(3), "weight": weight}, os.path.join(poisoned, "model.safetensors"))
    message = "model.safetensors holds weights that are not finite (NaN or inf, first in weight): the run had diverged"
    assert checkpoint_problem(poisoned) == message
    assert checkpoint_problem(poisoned, weights_only=True) == message
    with caplog.at_level("INFO", logger="training"):
        assert newest_loadable_checkpoint(str(ckpts)) == good
        assert loadable_checkpoints(str(ckpts)) == [good]
    assert f"--resume: skipping {poisoned}: {message}" in caplog.text
    assert f"leaving out {poisoned}: {message}" in caplog.text


def test_a_model_with_weights_that_are_not_finite_is_never_exported(tmp_path, multi30k_tokenizer):
    import torch
    from conftest import tiny_config

    from modeling import TransformerForConditionalGeneration
    from training.export import save_hub_folder

    model = TransformerForConditionalGeneration(tiny_config(vocab_size=len(multi30k_tokenizer)))
    with torch.no_grad():
        model.model.decoder.layers[0].ffn.fc1.weight[0, 0] = float("nan")
    with pytest.raises(
        SystemExit,
        match=r"the model has weights that are not finite \(NaN or inf, first in "
        r"model\.decoder\.layers\.0\.ffn\.fc1\.weight\); nothing was written",
    ):
        save_hub_folder(model, multi30k_tokenizer, str(tmp_path / "model"))
    assert os.listdir(tmp_path) == []


def test_resume_falls_back_to_the_newest_loadable_checkpoint(tmp_path, caplog):
    """Every checkpoint passed over is logged with the reason; a missing RNG state is warned about; the log
    loses the lines past the chosen step (they will be written again), atomically."""
    from types import SimpleNamespace

    from training.train import TrainConfig, resume_checkpoint

    ckpts = tmp_path / "checkpoints"
    good = write_loadable_checkpoint(ckpts / "checkpoint-10", 10, rng=False)
    cut(os.path.join(write_loadable_checkpoint(ckpts / "checkpoint-20", 20), "optimizer.pt"))
    cut(os.path.join(write_loadable_checkpoint(ckpts / "checkpoint-30", 30), "model.safetensors"))
    write_checkpoint(ckpts / "checkpoint-40", {"model.safetensors": b"\x00" * 10})
    lines = [json.dumps({"step": s, "time_s": float(s), "loss": 1.0}) + "\n" for s in range(5, 45, 5)]
    (tmp_path / "log.jsonl").write_text("".join(lines) + '{"step": 45, "ti', encoding="utf-8")  # cut by the kill

    config = TrainConfig(output_dir=str(tmp_path))
    with caplog.at_level("INFO", logger="training"):
        chosen = resume_checkpoint(config, SimpleNamespace(resume=True), SimpleNamespace(is_main_process=True))
    assert chosen == good
    messages = [r.getMessage() for r in caplog.records]
    assert (
        f"--resume: skipping {ckpts / 'checkpoint-40'}: incomplete, no trainer_state.json, optimizer.pt, "
        "scheduler.pt (a save was interrupted)" in messages
    )
    assert any(
        re.fullmatch(
            rf"--resume: skipping {re.escape(str(ckpts / 'checkpoint-30'))}: model\.safetensors "
            r"cannot be read \(.*\)",
            m,
        )
        for m in messages
    ), messages
    assert any(
        re.fullmatch(
            rf"--resume: skipping {re.escape(str(ckpts / 'checkpoint-20'))}: optimizer\.pt "
            r"cannot be read \(PytorchStreamReader failed.*\)",
            m,
        )
        for m in messages
    ), messages
    assert f"resuming from {good}" in messages
    assert (
        f"--resume: {good} has no rng_state.pth: the dropout draws will differ from those of an uninterrupted "
        "run" in messages
    )
    assert (tmp_path / "log.jsonl").read_text(encoding="utf-8") == "".join(lines[:2])  # steps 5 and 10
    assert "log.jsonl: dropped 7 lines after step 10 (they are trained again)" in messages
    assert not (tmp_path / "log.jsonl.tmp").exists()


def test_resume_without_a_loadable_checkpoint_starts_over_with_an_empty_log(tmp_path, caplog):
    from types import SimpleNamespace

    from training.train import TrainConfig, resume_checkpoint

    cut(os.path.join(write_loadable_checkpoint(tmp_path / "checkpoints" / "checkpoint-10", 10), "model.safetensors"))
    (tmp_path / "log.jsonl").write_text(json.dumps({"step": 5, "time_s": 3.0}) + "\n", encoding="utf-8")
    config = TrainConfig(output_dir=str(tmp_path))
    with caplog.at_level("INFO", logger="training"):
        assert resume_checkpoint(config, SimpleNamespace(resume=True), SimpleNamespace(is_main_process=True)) is None
    assert f"--resume: no loadable checkpoint in {tmp_path / 'checkpoints'} yet, starting from step 0" in caplog.text
    assert (tmp_path / "log.jsonl").read_text(encoding="utf-8") == ""


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
                assert proc.poll() is None, (
                    "the run ended before it saved a checkpoint:\n" + (tmp_path / "first.log").read_text()[-3000:]
                )
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
    kept = [e for e in log_before if e["step"] <= step]
    assert log[: len(kept)] == kept  # the killed run's log up to the checkpoint is kept; later lines are trained again
    new = log[len(kept) :]
    new_losses = [(e["step"], e["loss"]) for e in new if "loss" in e]
    assert [s for s, _ in new_losses] == list(range(step + LOGGING_STEPS, MAX_STEPS + 1, LOGGING_STEPS))
    assert min(e["step"] for e in new) > step
    assert new[0]["time_s"] >= kept[-1]["time_s"] if kept else True  # training time adds up
    final_state = read_json(ckpt_dir, f"checkpoint-{MAX_STEPS}", "trainer_state.json")
    assert final_state["global_step"] == MAX_STEPS
    assert [os.path.basename(p) for p in complete_checkpoints(ckpt_dir)] == [
        f"checkpoint-{s}" for s in range(SAVE_STEPS, MAX_STEPS + 1, SAVE_STEPS)
    ]

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
def test_resume_past_a_corrupt_last_checkpoint(trained_run, tmp_path):
    """The finished run's last checkpoint is full of NaN (it loads, but a diverged run wrote it), the one before
    has a cut optimizer state: --resume continues from the newest usable one, says why it passed over the others,
    trains the lost steps again (overwriting the bad checkpoints), logs each step once and exports finite weights."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(trained_run.out, out, symlinks=True, ignore=shutil.ignore_patterns("model"))
    ckpts = out / "checkpoints"
    last, before_last, fallback = (
        ckpts / f"checkpoint-{s}" for s in (MAX_STEPS, MAX_STEPS - SAVE_STEPS, MAX_STEPS - 2 * SAVE_STEPS)
    )
    poison(last / "model.safetensors")
    cut(before_last / "optimizer.pt")
    log_before = read_log(out)

    result = run(train_command(out, trained_run.data, "--resume", "--test-splits", "--export-dir", ""))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert (
        f"--resume: skipping {last}: model.safetensors holds weights that are not finite (NaN or inf, first in "
        "model.decoder.layers.0.encoder_attn.k_proj.bias): the run had diverged" in result.stdout
    )  # sorted names
    assert re.search(
        rf"--resume: skipping {re.escape(str(before_last))}: optimizer\.pt cannot be read \(", result.stdout
    )
    assert f"resuming from {fallback}" in result.stdout
    assert "missing keys" not in result.stdout + result.stderr  # the tied embeddings are tied, not reported
    assert checkpoint_problem(str(last)) is None and checkpoint_problem(str(before_last)) is None  # written again
    fallback_step = MAX_STEPS - 2 * SAVE_STEPS
    log = read_log(out)
    kept = [e for e in log_before if e["step"] <= fallback_step]
    assert log[: len(kept)] == kept
    losses = [e["step"] for e in log if "loss" in e]
    assert losses == list(range(LOGGING_STEPS, MAX_STEPS + 1, LOGGING_STEPS))  # each step once
    # Same optimizer, scheduler and RNG state as the uninterrupted run: the same losses.
    reference = {e["step"]: e["loss"] for e in log_before if "loss" in e}
    for e in log[len(kept) :]:
        if "loss" in e:
            assert e["loss"] == pytest.approx(reference[e["step"]], rel=1e-4, abs=1e-4), e
    assert (out / "model" / "model.safetensors").is_file()
    assert checkpoint_problem(str(out / "model"), weights_only=True) is None  # finite


def poison(path, value=float("nan")):
    """Every weight `value` (NaN by default, as a diverged run saves them); the file itself is sound."""
    import torch
    from safetensors.torch import load_file, save_file

    save_file({k: torch.full_like(v, value) for k, v in load_file(path).items()}, path, metadata={"format": "pt"})


def test_a_run_whose_loss_stops_being_finite_stops_naming_the_step(trained_run, tmp_path):
    """Fine-tuning a model whose weights are finite but huge (1e30): the first step's loss is not finite, and the
    run stops there with a message naming the step, instead of logging a loss of 0, saving NaN checkpoints and
    exporting them. A model whose weights are NaN is refused before any training."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained_run.model, broken)
    poison(broken / "model.safetensors")
    result = run(train_command(tmp_path / "nan-run", trained_run.data, "--init-from", str(broken)))
    assert result.returncode == 1 and "the weights are not finite (NaN or inf, first in " in result.stderr, (
        result.stderr[-3000:]
    )
    poison(broken / "model.safetensors", 1e30)
    out, export = tmp_path / "run", tmp_path / "export"
    result = run(train_command(out, trained_run.data, "--init-from", str(broken), "--export-dir", str(export)))
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert re.search(
        r"training: the loss is (nan|inf) at step 1 \(learning rate [\d.e-]+\): training diverged and "
        r"stopped, and nothing was exported\. Lower --learning-rate",
        result.stderr,
    ), result.stderr[-2000:]
    assert complete_checkpoints(str(out / "checkpoints")) == []
    assert not (out / "model").exists() and not export.exists()


@pytest.mark.slow
def test_overwrite_output_dir_starts_over(trained_run, tmp_path):
    """--overwrite-output-dir really starts over: the old tokenizer (another vocabulary size), checkpoints and
    log go; without it (tested in test_training_e2e.py) the folder is refused."""
    from training.data import read_lines
    from training.tokenizer import train_tokenizer

    out = tmp_path / "run"
    old_tok = train_tokenizer(read_lines(os.path.join(trained_run.data, "val.en.gz"))[:300], vocab_size=500)
    old_tok.save_pretrained(out / "tokenizer")
    write_checkpoint(
        out / "checkpoints" / "checkpoint-999",
        {
            **{name: b"old" for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth")},
            "trainer_state.json": json.dumps({"global_step": 999}).encode(),
        },
    )
    (out / "log.jsonl").write_text(json.dumps({"step": 999, "time_s": 86400.0, "loss": 1.0}) + "\n")
    (out / "train_config.json").write_text(json.dumps({"vocab_size": 500}), encoding="utf-8")
    for old_export in ("model", "model.previous-20260101-000000"):
        (out / old_export).mkdir()
        (out / old_export / "README.md").write_text("the previous run's model\n", encoding="utf-8")
    flags = [a for a in train_command(out, trained_run.data)]
    for flag, value in (("--max-steps", "2"), ("--save-steps", "2"), ("--eval-steps", "2"), ("--logging-steps", "1")):
        flags[flags.index(flag) + 1] = value
    result = run(flags + ["--overwrite-output-dir", "--test-splits"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "training a 400-token joint bpe vocabulary" in result.stdout
    # The whole previous run went at the start (before the new tokenizer), not when the new model/ was written.
    removed = (
        f"--overwrite-output-dir: removed the previous run's checkpoints, log.jsonl, model, "
        f"model.previous-20260101-000000, tokenizer, train_config.json from {out}"
    )
    assert removed in result.stdout
    assert result.stdout.index(removed) < result.stdout.index("training a 400-token joint bpe vocabulary")
    assert sorted(os.listdir(out)) == ["checkpoints", "log.jsonl", "model", "tokenizer", "train_config.json"]
    assert "the previous run's model" not in (out / "model" / "README.md").read_text(encoding="utf-8")
    assert read_json(out, "train_config.json")["vocab_size"] == 400
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(out / "tokenizer")) == 400
    assert [os.path.basename(p) for p in complete_checkpoints(str(out / "checkpoints"))] == ["checkpoint-2"]
    log = read_log(out)
    assert [e["step"] for e in log if "loss" in e] == [1, 2]
    assert all(e["time_s"] < 86400 for e in log)
    assert read_json(out / "model", "eval_results.json")["train_seconds"] < 86400


def test_clear_previous_run_removes_only_what_a_run_writes(tmp_path):
    from training.train import RUN_ENTRIES, clear_previous_run

    out, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not the run's\n", encoding="utf-8")
    out.mkdir()
    for name in RUN_ENTRIES:
        if name == "model":
            os.symlink(elsewhere, out / name)  # a link is removed, never followed
        elif "." in name and not name.endswith(".tmp") and name != "model.partial":
            (out / name).write_text("{}", encoding="utf-8")
        else:
            (out / name).mkdir()
            (out / name / "file").write_text("x", encoding="utf-8")
    (out / "model.previous-20260101-000000").mkdir()
    clear_previous_run(str(out))
    assert os.listdir(out) == []
    assert (elsewhere / "keep.txt").read_text(encoding="utf-8") == "not the run's\n"


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
    result = run(flags + ["--cooldown-steps", str(extra), "--resume", "--test-splits", "--export-dir", ""])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert f"resuming from {out / 'checkpoints' / f'checkpoint-{MAX_STEPS}'}" in result.stdout

    log = read_log(out)
    assert log[: len(log_before)] == log_before
    lrs = {e["step"]: e["learning_rate"] for e in log[len(log_before) :] if "learning_rate" in e}
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
        assert lr == pytest.approx(
            peak * learning_rate_factor(step - 1, warmup_steps=int(warmup), max_steps=total), rel=1e-6
        ), step
    for path, files in before.items():
        if os.path.isdir(path):  # older ones may be rotated out by --keep-checkpoints; the kept ones are intact
            assert snapshot(path) == files, path
    assert read_json(out / "checkpoints", f"checkpoint-{total}", "trainer_state.json")["global_step"] == total
    assert (out / "model" / "model.safetensors").is_file()
    card = (out / "model" / "README.md").read_text(encoding="utf-8")
    assert f"{total} steps" in card and f"falling linearly to zero over the last {extra}" in card


# ------------------------------------------------------------------------- damaged files of a run folder


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"global_step": "sixty"}, "global_step is 'sixty', not a step number"),
        ({"global_step": True}, "global_step is True, not a step number"),
        ({"log_history": "x"}, "log_history is a string, not an array"),
        ({"best_model_checkpoint": 3}, "best_model_checkpoint is a number, not a path"),
        ({"best_metric": "high"}, "best_metric is a string, not a number"),
    ],
)
def test_trainer_state_of_a_wrong_type_makes_the_checkpoint_unusable_saying_why(tmp_path, change, reason):
    good = write_loadable_checkpoint(tmp_path / "checkpoint-10", 10)
    bad = write_loadable_checkpoint(tmp_path / "checkpoint-20", 20)
    with open(os.path.join(bad, "trainer_state.json"), "w", encoding="utf-8") as fh:
        json.dump({"global_step": 20, "log_history": [], **change}, fh)
    found, unusable = scan_checkpoints(str(tmp_path))
    assert found == [good]
    assert unusable == [(bad, f"trainer_state.json is damaged ({reason})")]


def test_a_damaged_log_line_is_named_and_dropped(tmp_path, caplog):
    from training.train import _logged_seconds, trim_log

    lines = [json.dumps({"step": s, "time_s": float(s), "loss": 1.0}) for s in (5, 10, 15)]
    damaged = [
        lines[0],
        '{"step": 10, "ti',
        json.dumps({"step": "x"}),
        json.dumps({"step": 12, "time_s": None}),
        lines[2],
    ]
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(damaged) + "\n", encoding="utf-8")
    assert _logged_seconds(str(log)) == 15.0  # the damaged lines are no reason to fail
    with caplog.at_level("INFO", logger="training"):
        trim_log(str(log), 15)
    for number in (2, 3):
        assert f"log.jsonl: line {number} is damaged (not a JSON object with a step): dropped." in caplog.text
    assert log.read_text(encoding="utf-8").splitlines() == [lines[0], damaged[3], lines[2]]


def test_a_damaged_run_tokenizer_names_the_file_and_the_copy_to_restore(tmp_path, multi30k_tokenizer):
    from training.train import TrainConfig, build_tokenizer

    out = tmp_path / "run"
    multi30k_tokenizer.save_pretrained(out / "tokenizer")
    checkpoint = write_loadable_checkpoint(out / "checkpoints" / "checkpoint-30", 30)
    multi30k_tokenizer.save_pretrained(checkpoint)  # the Trainer saves the tokenizer with every checkpoint
    (out / "tokenizer" / "tokenizer.json").write_text('{"version": "1.0", "trunc', encoding="utf-8")
    config = TrainConfig(output_dir=str(out))
    with pytest.raises(
        SystemExit,
        match=rf"the run's tokenizer in {re.escape(str(out / 'tokenizer'))} cannot be read "
        rf"\(.*\)\. A copy is in {re.escape(os.path.join(checkpoint, 'tokenizer.json'))}"
        r": copy it over .*tokenizer\.json, then resume\.",
    ):
        build_tokenizer(config, None)
    os.remove(os.path.join(checkpoint, "tokenizer.json"))
    with pytest.raises(SystemExit, match=r"No copy is left in the run: start over with --overwrite-output-dir\."):
        build_tokenizer(config, None)
