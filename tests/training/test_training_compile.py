"""`--torch-compile`: the training step compiled gives the losses of the eager step, and what it saves (checkpoints
and the exported model) is the plain model, which loads and runs without torch.compile.

The aot_eager backend captures the same graphs through the same compile path as inductor (Dynamo, AOTAutograd,
the Trainer's and accelerate's wrapping) without generating kernels, so the test takes seconds instead of minutes;
dropout is off because a compiled graph draws its dropout masks from the RNG in another order than eager."""

import pytest
import torch
from safetensors.torch import load_file
from tiny_run import LOGGING_STEPS, make_tiny_data, read_log, run, train_command

STEPS = 30
FLAGS = ["--dropout", "0", "--max-steps", str(STEPS), "--save-steps", str(STEPS), "--eval-steps", str(STEPS)]
FLAGS += ["--average-last", "1"]


def losses(output_dir):
    return {e["step"]: e["loss"] for e in read_log(output_dir) if "loss" in e}


@pytest.mark.slow
def test_compiled_training_gives_eager_losses_and_saves_the_plain_model(tmp_path, data_dir):
    data = make_tiny_data(str(tmp_path / "data"), data_dir)
    eager_out, compiled_out = tmp_path / "eager", tmp_path / "compiled"
    eager = run(train_command(eager_out, data, *FLAGS))
    assert eager.returncode == 0, eager.stdout[-3000:] + eager.stderr[-5000:]
    compiled = run(train_command(compiled_out, data, *FLAGS, "--torch-compile", "--torch-compile-backend", "aot_eager"))
    assert compiled.returncode == 0, compiled.stdout[-3000:] + compiled.stderr[-5000:]

    # The same losses, step by step (float rounding: the compiled step computes the loss unfused).
    eager_losses, compiled_losses = losses(eager_out), losses(compiled_out)
    assert sorted(compiled_losses) == list(range(LOGGING_STEPS, STEPS + 1, LOGGING_STEPS))
    assert sorted(eager_losses) == sorted(compiled_losses)
    for step, loss in eager_losses.items():
        assert compiled_losses[step] == pytest.approx(loss, rel=1e-4, abs=1e-4), step
    # It trained: equal losses of a stuck run would say nothing.
    assert eager_losses[STEPS] < eager_losses[LOGGING_STEPS] - 0.5

    # The checkpoint holds the plain model's parameter names (no torch.compile wrapper prefix), with eager's
    # weights, and the exported model loads and translates without compiling.
    checkpoint = f"checkpoints/checkpoint-{STEPS}/model.safetensors"
    eager_weights, compiled_weights = load_file(eager_out / checkpoint), load_file(compiled_out / checkpoint)
    assert sorted(compiled_weights) == sorted(eager_weights)
    assert not any("_orig_mod" in name for name in compiled_weights)
    # A key projection's bias adds the same q.b to every score of a query, which softmax ignores: its true
    # gradient is 0, so Adam turns rounding noise into steps of about the learning rate. Every other weight is
    # eager's to float rounding.
    for name, weight in eager_weights.items():
        if not name.endswith("k_proj.bias"):
            torch.testing.assert_close(compiled_weights[name], weight, rtol=1e-5, atol=1e-6, msg=name)

    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    def translate(output_dir):
        model = AutoModelForSeq2SeqLM.from_pretrained(output_dir / "model", trust_remote_code=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(output_dir / "model", trust_remote_code=True)
        batch = tokenizer(["A man in a blue shirt is riding a bike."], return_tensors="pt")
        with torch.no_grad():
            return model.generate(**batch, max_new_tokens=12, num_beams=1)[0].tolist()

    translation = translate(compiled_out)
    assert len(translation) > 2 and translation == translate(eager_out)
