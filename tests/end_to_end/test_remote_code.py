"""A saved folder is a self-contained Hub repository: loadable with `trust_remote_code=True` by a Python
process that cannot import this project at all (transformers copies a remote module's relative imports into a
flat folder, with no sub-folders, and an absolute import of our packages would be a hidden requirement)."""

import json
import os
import textwrap

import pytest
import torch
from conftest import run_without_project, tiny_config

from modeling import TransformerForConditionalGeneration

# Runs in the child after conftest.WITHOUT_PROJECT, which takes this project off every import path; importing
# its packages must then fail.
CHILD = textwrap.dedent(
    """
    folder, inputs_path, out_path = sys.argv[2:5]
    for name in ("modeling", "configuration", "training"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
        else:
            raise AssertionError(f"import {name} worked")

    import torch
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    torch.set_num_threads(1)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
    inputs = torch.load(inputs_path)
    with torch.no_grad():
        logits = model(**inputs).logits
        generated = model.generate(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=6, num_beams=2
        )
    torch.save({"logits": logits, "generated": generated}, out_path)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("modeling", "configuration", "training"))
    print(json.dumps({
        "model_class": f"{type(model).__module__}.{type(model).__name__}",
        "config_class": f"{type(config).__module__}.{type(config).__name__}",
        "project_modules": loaded,
        "tied": model.lm_head.weight is model.model.shared.weight,
    }))
    """
)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = TransformerForConditionalGeneration(tiny_config(max_position_embeddings=32)).eval()
    folder = tmp_path / "repo"
    model.save_pretrained(folder)
    return model, folder


def test_saved_folder_is_flat_remote_code(saved):
    _, folder = saved
    files = sorted(os.listdir(folder))
    code = ("configuration_transformer.py", "modeling_transformer.py", "fast_paths.py")
    assert {"config.json", "model.safetensors", *code} <= set(files)
    assert not [f for f in files if os.path.isdir(folder / f)], "remote code cannot use sub-folders"
    for name in code:
        assert not os.path.islink(folder / name) and os.path.getsize(folder / name) > 1000
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "transformer"
    assert config["auto_map"] == {  # the saved class and its config
        "AutoConfig": "configuration_transformer.TransformerConfig",
        "AutoModelForSeq2SeqLM": "modeling_transformer.TransformerForConditionalGeneration",
    }
    modeling_source = (folder / "modeling_transformer.py").read_text()
    assert "from .configuration_transformer import TransformerConfig" in modeling_source
    assert "from .fast_paths import (" in modeling_source
    for source in [(folder / name).read_text() for name in code]:
        for line in source.splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                module = stripped.split()[1]
                # the standard library, torch, transformers and its own dependency huggingface_hub: all a Hub user has
                allowed = ("math", "os", "shutil", "collections", "torch", "transformers", "huggingface_hub", "")
                assert module.split(".")[0] in allowed or module.startswith("."), (
                    f"remote code imports {module!r}: {line!r}"
                )


def test_base_model_folder_maps_auto_model(tmp_path):
    from modeling import TransformerModel

    TransformerModel(tiny_config()).save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == "modeling_transformer.TransformerModel"
    assert os.path.isfile(tmp_path / "configuration_transformer.py")


def test_remote_code_loads_where_project_is_not_importable(saved, tmp_path):
    model, folder = saved
    input_ids = torch.tensor([[5, 17, 42, 8, 2], [33, 12, 2, 0, 0]])
    attention_mask = (input_ids != 0).long()
    decoder_input_ids = torch.tensor([[1, 7, 9, 11], [1, 4, 0, 0]])
    inputs = dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        decoder_input_ids=decoder_input_ids,
        decoder_attention_mask=(decoder_input_ids != 0).long(),
    )
    torch.save(inputs, tmp_path / "inputs.pt")
    result = run_without_project(CHILD, [folder, tmp_path / "inputs.pt", tmp_path / "out.pt"], tmp_path)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # The classes came from the folder's copy in the modules cache, not from this project.
    assert report["model_class"].startswith("transformers_modules."), report
    assert report["model_class"].endswith(".modeling_transformer.TransformerForConditionalGeneration"), report
    assert report["config_class"].endswith(".configuration_transformer.TransformerConfig"), report
    assert report["project_modules"] == [], report
    assert report["tied"] is True
    assert os.path.isdir(tmp_path / "hf_modules" / "transformers_modules")

    child = torch.load(tmp_path / "out.pt")
    with torch.no_grad():
        logits = model(**inputs).logits
        generated = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=6, num_beams=2)
    assert torch.equal(child["logits"], logits)
    assert torch.equal(child["generated"], generated)


def test_remote_code_fixture_folder_has_tokenizer_and_code(tiny_model_dir):
    """The shared fixture folder (model + tokenizer) is a complete repository for the Auto classes."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    files = set(os.listdir(tiny_model_dir))
    assert {
        "configuration_transformer.py",
        "modeling_transformer.py",
        "fast_paths.py",
        "tokenizer.json",
        "config.json",
    } <= files
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_model_dir, trust_remote_code=True).eval()
    assert model.config.vocab_size == len(tok)
    batch = tok(["A man rides a bike.", "Two dogs."], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=5)
    assert out.shape[0] == 2 and int(out.max()) < len(tok)
