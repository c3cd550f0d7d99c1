"""Fine-tuning (`--init-from`): a run that starts from a saved model folder keeps its weights, tokenizer and
architecture, takes this run's dropout, and says where it came from in train_config.json and the model card.
A folder that is not a model is refused before any work."""

import os

import pytest
from safetensors.torch import load_file
from tiny_run import read_json, run, shared_tiny_run, train_command


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, data_dir):
    base = shared_tiny_run(tmp_path_factory, data_dir)
    out = tmp_path_factory.mktemp("finetune") / "run"
    # A learning rate of 1e-9 for 2 steps: the weights stay those of the initial model (to 1e-6), so the check
    # below can tell "started from it" from "started from scratch". --d-model 64 must be ignored (and said so).
    cmd = train_command(
        out,
        base.data,
        "--init-from",
        base.model,
        "--max-steps",
        "2",
        "--save-steps",
        "1",
        "--eval-steps",
        "2",
        "--learning-rate",
        "1e-9",
        "--warmup-steps",
        "0",
        "--dropout",
        "0.25",
        "--d-model",
        "64",
    )
    result = run(cmd)
    assert result.returncode == 0, f"fine-tuning failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return base, str(out), result


def test_weights_start_from_the_initial_model(finetuned):
    base, out, _ = finetuned
    init = load_file(os.path.join(base.model, "model.safetensors"))
    first = load_file(os.path.join(out, "checkpoints", "checkpoint-1", "model.safetensors"))
    assert init.keys() == first.keys()
    for name, tensor in init.items():
        assert (first[name] - tensor).abs().max().item() < 1e-6, name


def test_tokenizer_and_architecture_are_the_initial_models(finetuned):
    base, out, result = finetuned
    assert (
        read_json(out, "tokenizer", "tokenizer.json")["model"]["vocab"]
        == read_json(base.model, "tokenizer.json")["model"]["vocab"]
    )
    config = read_json(out, "train_config.json")
    init_config = read_json(base.model, "config.json")
    assert config["init_from"] == base.model
    assert config["d_model"] == init_config["d_model"] == 32  # the tiny run's size, not the --d-model 64 given
    assert "ignoring d_model=64" in result.stdout
    model_config = read_json(out, "model", "config.json")
    assert model_config["dropout"] == 0.25 and model_config["d_model"] == 32


def test_model_card_says_it_was_fine_tuned(finetuned):
    base, out, _ = finetuned
    with open(os.path.join(out, "model", "README.md"), encoding="utf-8") as fh:
        card = fh.read()
    assert f"fine-tuned from `{base.model}`" in card and "trained from scratch" not in card
    # Reproducing it takes both commands: the initial model's, then this one; the time adds up.
    initial, record = read_json(base.model, "eval_results.json"), read_json(out, "model", "eval_results.json")
    assert len(record["commands"]) == 2 and record["commands"][0] == initial["commands"][0]
    assert "--init-from" not in record["commands"][0] and f"--init-from {base.model}" in record["commands"][1]
    reproduce = card.split("## Reproduce", 1)[1].split("```")[1]
    assert [line for line in reproduce.splitlines() if line] == record["commands"]
    assert record["total_train_seconds"] == pytest.approx(initial["train_seconds"] + record["train_seconds"], abs=1)
    assert "h in all)" in card


def test_a_folder_that_is_not_a_model_is_refused(tmp_path, data_dir):
    not_a_model = tmp_path / "notes"
    not_a_model.mkdir()
    (not_a_model / "todo.txt").write_text("train a model\n", encoding="utf-8")
    out = tmp_path / "run"
    result = run(train_command(out, data_dir, "--init-from", str(not_a_model)), timeout=300)
    assert result.returncode == 1
    assert "is not a model folder (no config.json in it)" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
