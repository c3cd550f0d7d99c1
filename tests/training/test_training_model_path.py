"""`python -m training.evaluate` and `python -m training.translate` refuse a model path that holds no model at
once, naming it, before transformers is imported: a local path is never tried as a Hub id (a mistyped folder
once spent 49 s in the Hub client's retries). A path is local as for --data in training.data: it exists,
starts with `.`, `/` or `~`, or is not of the Hub's `owner/name` form."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT

from training import evaluate, translate

# Runs a command's main() in a child and reports its exit message and the heavy modules it had imported by then.
CHILD = textwrap.dedent(
    """
    import importlib, json, sys
    main = importlib.import_module(sys.argv[1]).main
    try:
        main(sys.argv[2:])
        code, message = 0, ""
    except SystemExit as e:
        code, message = e.code, str(e.code)
    heavy = sorted(m for m in ("torch", "transformers", "huggingface_hub", "tokenizers") if m in sys.modules)
    print(json.dumps({"code": code, "message": message, "heavy": heavy}))
    """
)


def run_child(module, *argv):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", CHILD, module, *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["training.evaluate", "training.translate"])
def test_missing_model_folder_fails_at_once_naming_it(tmp_path, module):
    missing = tmp_path / "runs" / "no-such-run" / "model"
    report = run_child(module, str(missing))
    assert report["code"] != 0
    prog = module.split(".")[1]
    assert report["message"] == (
        f"{prog}: model folder {str(missing)!r} does not exist ({missing}); pass a folder written by "
        "training.train or save_pretrained (a run's model/), or a Hub model id of the form owner/name."
    )
    assert report["heavy"] == []  # nothing was loaded, so nothing was asked of the Hub


@pytest.fixture
def no_transformers(monkeypatch):
    """Importing transformers fails: a refusal that comes first never reaches it."""
    monkeypatch.setitem(sys.modules, "transformers", None)


@pytest.mark.parametrize(
    "path",
    ["no-such-model", "./no-such-model", "../no-such-model", "a/b/c", "~/no-such-model-x", "owner/name with spaces"],
)
def test_local_looking_paths_are_never_hub_ids(tmp_path, monkeypatch, no_transformers, path):
    monkeypatch.chdir(tmp_path)
    assert evaluate.looks_local(path)
    with pytest.raises(SystemExit, match=rf"^evaluate: model folder {path!r} does not exist \("):
        evaluate.main([path, "--data", str(tmp_path)])


def test_translate_refuses_before_reading_stdin(tmp_path, monkeypatch, no_transformers):
    class Unread:
        def read(self):
            raise AssertionError("stdin was read before the model path was checked")

    monkeypatch.setattr(sys, "stdin", Unread())
    missing = str(tmp_path / "model")
    with pytest.raises(SystemExit, match=rf"^translate: model folder {missing!r} does not exist"):
        translate.main([missing])


def test_folder_or_file_without_a_model(tmp_path, no_transformers):
    (tmp_path / "empty").mkdir()
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(SystemExit, match=r"^evaluate: '.*empty' is not a model folder \(no config\.json in it\)"):
        evaluate.main([str(tmp_path / "empty")])
    with pytest.raises(SystemExit, match=r"^translate: '.*weights\.bin' is a file, not a model folder"):
        translate.main([str(tmp_path / "weights.bin")])
    with pytest.raises(SystemExit, match=r"^cannot load a model: '.*empty' is not a model folder"):
        evaluate.load(str(tmp_path / "empty"))


def test_hub_ids_and_model_folders_pass(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for hub_id in ("Helsinki-NLP/opus-mt-en-de", "owner/model.v2_1"):
        assert not evaluate.looks_local(hub_id) and evaluate.resolve_model(hub_id, "evaluate") == hub_id
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert evaluate.looks_local("model") and evaluate.resolve_model("model", "evaluate") == "model"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert evaluate.resolve_model("~/model", "evaluate") == str(tmp_path / "model")
