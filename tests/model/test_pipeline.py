"""`pipeline("translation", model=<folder>, trust_remote_code=True)` in a fresh Python process that cannot
import this project: the custom pipeline shipped in the folder (`custom_pipelines` in config.json) brings
back the task transformers 5 removed, with batching and beam settings. Runs on the shipped model
`space/model/` when it exists, else on the tiny model exported by test_training_e2e.py's run."""

import json
import os
import textwrap

import pytest
from conftest import ROOT, run_without_project
from tiny_run import shared_tiny_run

SHIPPED = os.path.join(ROOT, "space", "model")

CHILD = textwrap.dedent(
    """
    folder = sys.argv[2]

    import torch
    from transformers import pipeline

    torch.set_num_threads(1)
    translator = pipeline("translation", model=folder, trust_remote_code=True)
    tok, model = translator.tokenizer, translator.model
    sentences = ["A man is riding a bike.", "Two dogs are playing in the snow.", "A little girl in a pink dress.",
                 "People are walking down the street."]

    def generate(text, **kwargs):
        with torch.no_grad():
            ids = model.generate(**tok(text, return_tensors="pt"), **kwargs)
        return tok.decode(ids[0], skip_special_tokens=True).strip()

    report = {
        "pipeline_class": f"{type(translator).__module__}.{type(translator).__name__}",
        "model_class": f"{type(model).__module__}.{type(model).__name__}",
        "single": translator(sentences[0]),
        "batched": translator(sentences, batch_size=2, num_beams=2),
        "batched_greedy_short": translator(sentences, batch_size=3, num_beams=1, max_new_tokens=5),
        # The same sentence translated directly: default (beam 4, alpha 0.6 from generation_config) and greedy.
        "direct_default": generate(sentences[0]),
        "direct_beam2": [generate(s, num_beams=2) for s in sentences],
        "greedy_pipeline": translator(sentences[1], num_beams=1)[0]["translation_text"],
        "greedy_direct": generate(sentences[1], num_beams=1),
        "num_beams": model.generation_config.num_beams,
        "length_penalty": model.generation_config.length_penalty,
        "short_lengths": [len(tok(r["translation_text"], add_special_tokens=False)["input_ids"])
                          for r in translator(sentences, batch_size=3, num_beams=1, max_new_tokens=5)],
    }
    report["empty"] = translator("")
    report["batch_with_empty"] = translator([sentences[0], "", "   ", sentences[1]], batch_size=2, num_beams=2)
    report["project_modules"] = sorted(m for m in sys.modules if m.split(".")[0] in ("modeling", "configuration", "training"))
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory, request):
    """The shipped model if it is there, else the tiny one the shared training run exported."""
    if os.path.isfile(os.path.join(SHIPPED, "config.json")):
        return SHIPPED
    data_dir = request.getfixturevalue("data_dir")
    return shared_tiny_run(tmp_path_factory, data_dir).export


def test_translation_pipeline_without_the_project(model_folder, tmp_path):
    result = run_without_project(CHILD, [model_folder], tmp_path, timeout=900, TOKENIZERS_PARALLELISM="false")
    r = json.loads(result.stdout.strip().splitlines()[-1])

    # The pipeline and the model came from the folder's remote code, not from this project.
    assert r["pipeline_class"].startswith("transformers_modules.") and r["pipeline_class"].endswith(
        ".pipeline_translation.TranslationPipeline"
    ), r["pipeline_class"]
    assert r["model_class"].endswith(".modeling_transformer.TransformerForConditionalGeneration"), r["model_class"]
    assert r["project_modules"] == []

    # Output shape of the old built-in task: a string gives [{"translation_text": str}], a list one per input.
    assert isinstance(r["single"], list) and len(r["single"]) == 1
    assert set(r["single"][0]) == {"translation_text"} and isinstance(r["single"][0]["translation_text"], str)
    for key in ("batched", "batched_greedy_short"):
        assert len(r[key]) == 4
        assert all(set(x) == {"translation_text"} and isinstance(x["translation_text"], str) for x in r[key])

    # Decoding settings: the folder's generation_config.json by default (beam 4 / alpha 0.6 for a model the
    # training exported with its defaults), call keywords pass through to generate.
    with open(os.path.join(model_folder, "generation_config.json"), encoding="utf-8") as fh:
        gen = json.load(fh)
    assert (r["num_beams"], r["length_penalty"]) == (gen["num_beams"], gen["length_penalty"])
    if model_folder != SHIPPED:
        assert (r["num_beams"], r["length_penalty"]) == (4, 0.6)
    assert r["single"][0]["translation_text"] == r["direct_default"]
    assert r["greedy_pipeline"] == r["greedy_direct"]
    assert all(n <= 5 for n in r["short_lengths"]), r["short_lengths"]
    # Batches of 2 (padded) give the sentences' own beam-2 translations.
    assert [x["translation_text"] for x in r["batched"]] == r["direct_beam2"]
    # An empty text translates to an empty one, also inside a batch, whose other sentences are unchanged.
    assert r["empty"] == [{"translation_text": ""}]
    assert [x["translation_text"] for x in r["batch_with_empty"]] == [
        r["direct_beam2"][0],
        "",
        "",
        r["direct_beam2"][1],
    ]

    if model_folder == SHIPPED:  # the real model translates
        assert "Mann" in r["single"][0]["translation_text"], r["single"]
        assert "Hunde" in r["batched"][1]["translation_text"], r["batched"]


RESAVE = textwrap.dedent(
    """
    folder, again = sys.argv[2], sys.argv[3]

    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

    torch.set_num_threads(1)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)
    model.save_pretrained(again)
    AutoTokenizer.from_pretrained(folder, trust_remote_code=True).save_pretrained(again)
    translator = pipeline("translation", model=again, trust_remote_code=True)
    print(json.dumps({"files": sorted(os.listdir(again)),
                      "translation": translator("A man is riding a bike.", num_beams=1)[0]["translation_text"],
                      "original": pipeline("translation", model=folder, trust_remote_code=True)(
                          "A man is riding a bike.", num_beams=1)[0]["translation_text"]}))
    """
)


def test_a_loaded_and_resaved_model_keeps_its_pipeline(model_folder, tmp_path):
    """save_pretrained of a model loaded as remote code writes the pipeline file its config.json declares, so
    the re-saved folder is still a complete Hub repository that pipeline(...) can load."""
    result = run_without_project(
        "import os\n" + RESAVE,
        [model_folder, tmp_path / "again"],
        tmp_path,
        timeout=900,
        TOKENIZERS_PARALLELISM="false",
    )
    r = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"pipeline_translation.py", "modeling_transformer.py", "fast_paths.py"} <= set(r["files"]), r["files"]
    assert r["translation"] == r["original"] and r["translation"]
