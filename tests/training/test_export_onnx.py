"""`python -m training.export_marian MODEL OUT --onnx DIR`: ONNX graphs of the Marian export (torch.onnx.export,
dynamo: encoder, cross-attention keys and values, one decoder step with the self-attention cache), run by ONNX
Runtime under transformers' generate(), and `training.translate DIR --engine onnxruntime`. Skipped, saying what
to install, without onnxruntime, onnx and onnxscript (pip install -e '.[deploy]'). Nothing is downloaded: a tiny
model with perturbed weights beside the real Multi30k tokenizer, and the shipped space/model."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT
from test_export_marian import SENTENCES, assert_same_outputs, outputs, save_model

from training import export_marian
from training.export_marian import ONNX_GRAPHS, ExportError, export, load_onnx_model

for _name in ("onnxruntime", "onnx", "onnxscript"):
    pytest.importorskip(
        _name,
        reason=f"{_name} is not installed: the ONNX export needs onnxruntime, onnx and "
        "onnxscript (pip install -e '.[deploy]')",
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, multi30k_tokenizer):
    """(source folder, its model, the Marian folder, the ONNX folder, export()'s result) for a tiny model with a
    logits bias and beam-3 generation settings."""
    root = tmp_path_factory.mktemp("onnx")
    model = save_model(root / "ours", multi30k_tokenizer, add_final_logits_bias=True)
    result = export(str(root / "ours"), str(root / "marian"), onnx_out=str(root / "onnx"))
    return root / "ours", model, root / "marian", root / "onnx", result


def test_onnx_runtime_computes_what_the_model_computes(tiny, multi30k_tokenizer):
    from transformers import AutoTokenizer, MarianMTModel

    _, model, marian_folder, folder, result = tiny
    checked = result["onnx"]
    assert checked["out"] == str(folder) and checked["max_logit_difference"] < 1e-4
    assert checked["same_greedy"] and checked["same_beam"]
    assert sorted(os.listdir(folder)) == sorted(
        [*ONNX_GRAPHS, "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]
    )
    onnx_model = load_onnx_model(str(folder), threads=1)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert onnx_model.generation_config.num_beams == 3 and onnx_model.generation_config.length_penalty == 1.2
    ours = outputs(model, multi30k_tokenizer)  # logits (teacher-forced on the greedy output), greedy, beam 3
    assert_same_outputs(ours, outputs(onnx_model, tokenizer))
    marian = MarianMTModel.from_pretrained(str(marian_folder)).eval()
    assert_same_outputs(outputs(marian, tokenizer), outputs(onnx_model, tokenizer))


def test_onnx_runtime_decodes_batches_of_any_size_and_padding(tiny, multi30k_tokenizer):
    """One sentence alone, then a batch padded to a longer source: the graphs' batch, source and decoded lengths
    are dynamic, and the first step starts from an empty self-attention cache."""
    _, model, _, folder, _ = tiny
    onnx_model = load_onnx_model(str(folder), threads=1)
    for sentences in (SENTENCES[:1], [*SENTENCES, "A " * 30 + "dog."]):
        assert_same_outputs(
            outputs(model, multi30k_tokenizer, sentences), outputs(onnx_model, multi30k_tokenizer, sentences)
        )


def test_an_existing_onnx_folder_is_replaced_only_with_overwrite(tiny, tmp_path):
    source, _, marian_folder, folder, _ = tiny
    taken = tmp_path / "onnx"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"output folder .*onnx exists and is not empty; pass --overwrite"):
        export(str(source), str(tmp_path / "marian"), onnx_out=str(taken))
    assert sorted(os.listdir(tmp_path)) == ["onnx"]  # refused before the Marian folder was written
    with pytest.raises(ExportError, match=r"--overwrite refused: .*holds notes.txt"):
        export_marian.to_onnx(str(marian_folder), str(taken), overwrite=True)
    assert (taken / "notes.txt").read_text() == "mine"
    with pytest.raises(ExportError, match=r"exists and is not empty; pass --overwrite"):
        export_marian.to_onnx(str(marian_folder), str(folder))
    before = (folder / "decoder.onnx").stat().st_mtime_ns
    export_marian.to_onnx(str(marian_folder), str(folder), overwrite=True)  # an ONNX folder written here: replaced
    assert (folder / "decoder.onnx").stat().st_mtime_ns != before
    assert not [n for n in os.listdir(folder.parent) if n.endswith((".partial", ".old"))]  # nothing left beside
    with pytest.raises(ExportError, match=r"the ONNX folder .* and the Marian folder .* overlap"):
        export(str(source), str(tmp_path / "m2"), onnx_out=str(tmp_path / "m2" / "onnx"))


def test_translate_cli_on_the_onnxruntime_engine_gives_the_models_translations(tiny, multi30k_tokenizer, tmp_path):
    """`training.translate DIR --engine onnxruntime` writes, line for line (blank lines kept), what the PyTorch
    model's generate() writes with its generation settings (beam 3, length penalty 1.2), and --num-beams 1."""
    from training.translate_utils import translate_batch

    _, model, _, folder, _ = tiny
    lines = [SENTENCES[0], "", *SENTENCES[1:]]
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "OMP_NUM_THREADS": "1"}
    for extra, settings in (([], {}), (["--num-beams", "1"], {"num_beams": 1})):
        result = subprocess.run(
            [sys.executable, "-m", "training.translate", str(folder), "--engine", "onnxruntime", *extra],
            input="\n".join(lines) + "\n",
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        expected = translate_batch(model, multi30k_tokenizer, SENTENCES, **settings)
        assert result.stdout.split("\n")[:-1] == [expected[0], "", *expected[1:]]
    refused = subprocess.run(
        [sys.executable, "-m", "training.translate", str(tmp_path), "--engine", "onnxruntime"],
        input="x\n",
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode == 1 and "is not an ONNX model folder (no encoder.onnx" in refused.stderr
