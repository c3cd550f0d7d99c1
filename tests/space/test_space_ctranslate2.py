"""The Space's translations on CTranslate2: the shipped model's CTranslate2 copy (space/model/ctranslate2) serves
them, token for token as PyTorch's generate() would, concurrent ones batched; a copy converted from other weights,
or none, is never used (auto falls back to PyTorch and says why, --engine ctranslate2 refuses)."""

import os
import shutil
import subprocess
import sys
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import GRADIO_WARNINGS, ROOT, SHIPPED_MODEL, SPACE, serve_space

pytest.importorskip("ctranslate2", reason="CTranslate2 is in the deploy extra: pip install -e '.[deploy]'")

pytestmark = GRADIO_WARNINGS

SENTENCES = [
    "A man in a blue shirt is standing on a ladder cleaning windows.",
    "Two dogs play in the snow.",
    "A dog.",
    "A woman in a red dress is walking her dog along the beach while two men sit on a bench and read.",
    "An old man with a white beard plays the guitar on a street corner.",
    "The animal didn't cross the street because it was too tired.",
]


@pytest.fixture(scope="module")
def bundles():
    """(the Space's default bundle, one on PyTorch) for the shipped model."""
    if not os.path.isfile(os.path.join(SHIPPED_MODEL, "ctranslate2", "model.bin")):
        pytest.fail(f"the shipped model has no CTranslate2 copy in {SHIPPED_MODEL}/ctranslate2")
    from translation_engine import load_bundle

    return load_bundle(SHIPPED_MODEL), load_bundle(SHIPPED_MODEL, engine="torch")


def model_copy(tmp_path, with_ctranslate2=True):
    """The shipped model folder copied (without its pictures and circuits), to spoil."""
    folder = tmp_path / "model"
    shutil.copytree(
        SHIPPED_MODEL,
        folder,
        ignore=shutil.ignore_patterns("*.png", "circuits", *([] if with_ctranslate2 else ["ctranslate2"])),
    )
    return str(folder)


def test_shipped_copy_is_of_the_shipped_weights(bundles):
    from model_metadata import weights_sha256
    from translation_engine import ctranslate2_problem

    assert ctranslate2_problem(SHIPPED_MODEL) is None
    ct2, torch_bundle = bundles
    assert ct2.engine == "CTranslate2" and ct2.engine_note == ""
    assert torch_bundle.engine == "PyTorch generate()"
    assert len(weights_sha256(SHIPPED_MODEL)) == 64


@pytest.mark.parametrize("num_beams", [1, None], ids=["greedy", "model's beam search"])
def test_translations_equal_generate_token_for_token(bundles, num_beams):
    ct2, torch_bundle = bundles
    for sentence in SENTENCES:
        ours = ct2.translate(sentence, num_beams, with_attention=False)
        reference = torch_bundle.translate(sentence, num_beams, with_attention=False)
        assert ours.decoder_ids == reference.decoder_ids, sentence
        assert ours.text == reference.text and ours.notices == reference.notices


def test_stopping_at_the_length_limit_says_so_as_generate_does(bundles):
    ct2, torch_bundle = bundles
    ours = ct2.translate(SENTENCES[0], 1, max_new_tokens=4, with_attention=False)
    reference = torch_bundle.translate(SENTENCES[0], 1, max_new_tokens=4, with_attention=False)
    assert ours.decoder_ids == reference.decoder_ids and len(ours.decoder_ids) == 5  # <start> + 4 tokens
    assert "The translation stopped at the maximum length (4 tokens)." in ours.notices


def test_attention_runs_the_pytorch_model_on_the_ctranslate2_translation(bundles):
    ct2, torch_bundle = bundles
    ours = ct2.translate(SENTENCES[1])
    reference = torch_bundle.translate(SENTENCES[1])
    assert ours.attention is not None
    assert ours.attention.target_tokens == reference.attention.target_tokens


def test_concurrent_translations_are_batched_and_equal_one_at_a_time(bundles):
    ct2, _ = bundles
    alone = [ct2.translate(s, 1, with_attention=False).decoder_ids for s in SENTENCES]
    start = threading.Barrier(len(SENTENCES))

    def one(sentence):
        start.wait()
        return ct2.translate(sentence, 1, with_attention=False).decoder_ids

    calls_before = len(ct2.batcher.batch_sizes)
    with ThreadPoolExecutor(len(SENTENCES)) as pool:
        together = list(pool.map(one, SENTENCES))
    assert together == alone
    assert max(ct2.batcher.batch_sizes[calls_before:]) > 1  # served together


def test_a_copy_of_other_weights_is_never_used(tmp_path):
    import json

    from translation_engine import ModelSourceError, load_bundle

    folder = model_copy(tmp_path)
    record = os.path.join(folder, "ctranslate2", "converted_from.json")
    with open(record, encoding="utf-8") as fh:
        data = json.load(fh)
    data["weights_sha256"] = "0" * 64  # as after retraining the model without converting it again
    with open(record, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    bundle = load_bundle(folder)
    assert bundle.engine == "PyTorch generate()"
    assert bundle.engine_note == (
        f"translating with PyTorch: {folder}/ctranslate2 was converted from other weights than "
        f"{folder}/model.safetensors (the model was retrained or replaced since); remake it with "
        f"`python -m training.export_marian {folder} /tmp/marian --ctranslate2 {folder}/ctranslate2 --overwrite`"
    )
    with pytest.raises(ModelSourceError, match=r"^--engine ctranslate2: .*was converted from other weights than"):
        load_bundle(folder, engine="ctranslate2")
    os.remove(record)
    with pytest.raises(
        ModelSourceError,
        match=r"does not record which weights it was converted from "
        r"\(converted_from\.json\); remake it with",
    ):
        load_bundle(folder, engine="ctranslate2")


def test_a_folder_without_a_copy_is_served_by_pytorch(tmp_path):
    from translation_engine import ModelSourceError, load_bundle

    folder = model_copy(tmp_path, with_ctranslate2=False)
    bundle = load_bundle(folder)
    assert bundle.engine == "PyTorch generate()"
    assert bundle.engine_note.startswith(f"translating with PyTorch: {folder} has no CTranslate2 copy")
    with pytest.raises(ModelSourceError, match=r"unknown engine 'onnx'; choose one of auto, torch, ctranslate2"):
        load_bundle(folder, engine="onnx")
    result = subprocess.run(
        [sys.executable, os.path.join(SPACE, "app.py"), "--model", folder, "--engine", "ctranslate2", "--port", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert (
        f"space/app.py: --engine ctranslate2: {folder} has no CTranslate2 copy ({folder}/ctranslate2/model.bin)"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_page_says_what_translates_and_what_the_analyses_run(bundles):
    ct2, torch_bundle = bundles
    for bundle, shown in ((ct2, True), (torch_bundle, False)):
        with serve_space(bundle, tabs=[]) as url:
            with urllib.request.urlopen(url + "config", timeout=60) as response:
                page = response.read().decode("utf-8")
            assert ("decoded by **CTranslate2**" in page) is shown
            assert ("every analysis run the PyTorch model" in page) is shown
