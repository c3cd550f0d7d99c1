"""`python -m training.train` refuses bad settings and bad data before any work starts: a clear message, no
traceback, no tokenizer trained, the output folder not created. (Refusing an existing run folder is tested
on a real run in test_training_e2e.py.)"""

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT

from training.train import TrainConfig, parse_args

# Runs main() in a child and reports what it raised and which heavy modules it had imported by then.
CHILD = textwrap.dedent(
    """
    import json, sys
    from training.train import main
    try:
        main(sys.argv[1:])
        code, message = 0, ""
    except SystemExit as e:
        code, message = e.code, str(e.code)
    heavy = sorted(m for m in ("torch", "transformers", "tokenizers", "datasets", "accelerate") if m in sys.modules)
    print(json.dumps({"code": code, "message": message, "heavy": heavy}))
    """
)


def env():
    e = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    e.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return e


def refuse(*args, timeout=600):
    """Run main() in a child with these arguments; it must refuse with a message before importing torch."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *args], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] not in (0, None), report
    return report


BAD_VALUES = [
    (["--dropout", "1.5"], "dropout must be in [0, 1), got 1.5"),
    (["--d-model", "250", "--attention-heads", "4"], "d_model (250) must be divisible by attention_heads (4)"),
    (
        ["--vocab-size", "0"],
        "vocab_size must be an integer >= 360 (the tokenizer's 4 special and 256 byte tokens, and "
        "at least 100 learned subwords), got 0",
    ),
    (["--vocab-size", "300"], "vocab_size must be an integer >= 360"),
    (["--length-penalty", "nan"], "length_penalty must be a finite number, got nan"),
    (["--length-penalty", "inf"], "length_penalty must be a finite number, got inf"),
    (
        ["--length-penalty-candidates", "0.6", "inf"],
        "length_penalty_candidates must be a list of numbers, all finite, got [0.6, inf]",
    ),
    (["--max-grad-norm", "-1"], "max_grad_norm must be > 0, or 0 for no gradient clipping (a finite number), got -1.0"),
    (["--max-grad-norm", "nan"], "max_grad_norm must be > 0, or 0 for no gradient clipping (a finite number), got nan"),
    (["--adam-epsilon", "inf"], "adam_epsilon must be > 0 and finite, got inf"),
    (["--dropout", "nan"], "dropout must be in [0, 1), got nan"),
    (["--max-steps", "-5"], "max_steps must be a positive integer, got -5"),
    (["--learning-rate", "2"], "learning_rate must be in (0, 1), got 2.0"),
    (["--adam-epsilon", "0"], "adam_epsilon must be > 0"),
    (["--warmup-steps", "-1"], "warmup_steps must be an integer >= 0, got -1"),
    (
        ["--max-steps", "100", "--warmup-steps", "40", "--cooldown-steps", "80"],
        "warmup_steps (40) + cooldown_steps (80) must not exceed max_steps (100)",
    ),
    (["--cooldown-steps", "-1"], "cooldown_steps must be an integer >= 0, got -1"),
    (["--eval-steps", "15", "--save-steps", "10"], "eval_steps (15) must be a multiple of save_steps (10)"),
    (["--tokenizer-type", "wordpiece"], "tokenizer_type must be 'bpe' or 'unigram'"),
    (["--position-embedding-type", "rotary"], "position_embedding_type must be 'sinusoidal' or 'learned'"),
    (["--source-lang", "de", "--target-lang", "de"], "source_lang and target_lang are both 'de'"),
]


@pytest.mark.parametrize("argv,message", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_value_is_refused_by_name(argv, message):
    with pytest.raises(SystemExit) as err:
        parse_args(argv)
    text = str(err.value.code)
    assert text.startswith("training: bad configuration:")
    assert message in text, text


def test_every_problem_is_listed_at_once():
    with pytest.raises(SystemExit) as err:
        parse_args(["--dropout", "1.5", "--batch-size", "0", "--label-smoothing", "-0.1"])
    text = str(err.value.code)
    assert "dropout" in text and "batch_size" in text and "label_smoothing" in text


def test_unparsable_flag_value():
    with pytest.raises(SystemExit) as err:
        parse_args(["--d-model", "big"])
    assert err.value.code == 2  # argparse's usage error


def test_abbreviated_flag_is_an_error(capsys):
    """argparse's prefix matching would take the typo --max-step for --max-steps and start a default-size run."""
    with pytest.raises(SystemExit) as err:
        parse_args(["--max-step", "10"])
    assert err.value.code == 2
    assert "unrecognized arguments: --max-step 10" in capsys.readouterr().err


def help_entries(capsys) -> dict:
    """{flag: its whole --help entry, on one line}."""
    with pytest.raises(SystemExit) as err:
        parse_args(["--help"])
    assert err.value.code == 0
    out = capsys.readouterr().out
    entries = re.split(r"\n  (?=--)", out)[1:]
    return {entry.split()[0].rstrip(","): " ".join(entry.split()) for entry in entries}


def test_every_flag_has_a_help_text_with_its_default(capsys):
    entries = help_entries(capsys)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        entry = entries[flag]
        described = entry.split(" (default:")[0].split()
        words = [w for w in described if not w.startswith("--") and not w.isupper() and not w.startswith("[")]
        assert len(words) >= 3, entry  # a description, not only "(default ...)"
        if not isinstance(getattr(TrainConfig(), f.name), bool):
            assert re.search(r"\(default: [^)]+\)$", entry), entry
    assert "(default: None)" not in " ".join(entries.values())
    # The allowed values are stated.
    assert "{bpe,unigram}" in entries["--tokenizer-type"]
    assert "0 = no clipping" in entries["--max-grad-norm"]
    assert "in [0, 1)" in entries["--dropout"] and "in (0, 1)" in entries["--learning-rate"]
    assert "1 = greedy" in entries["--num-beams"]


def test_final_eval_limit_scales_with_the_run():
    """A tiny run's model is not worth minutes of beam search over whole splits."""
    from training.run_config import final_eval_limit

    assert TrainConfig().final_eval_limit is None  # by the run's length
    assert final_eval_limit(parse_args(["--max-steps", "60"])[0]) == 100
    assert final_eval_limit(parse_args(["--max-steps", "999"])[0]) == 100
    assert final_eval_limit(parse_args(["--max-steps", "1000"])[0]) == 0  # the whole split
    assert final_eval_limit(parse_args(["--max-steps", "60", "--final-eval-limit", "0"])[0]) == 0
    assert final_eval_limit(parse_args(["--final-eval-limit", "16"])[0]) == 16
    with pytest.raises(
        SystemExit,
        match=r"final_eval_limit must be an integer >= 0 \(0 = the whole split\), or null "
        r"for the default, got -1",
    ):
        parse_args(["--final-eval-limit", "-1"])


def test_defaults_are_the_papers_recipe():
    config, _ = parse_args([])
    assert (config.adam_beta1, config.adam_beta2, config.adam_epsilon) == (0.9, 0.98, 1e-9)
    assert config.label_smoothing == 0.1 and config.dropout == 0.1
    assert (config.num_beams, config.length_penalty) == (4, 0.6)
    assert config == TrainConfig()


@pytest.mark.parametrize(
    "name", sorted(n for n in os.listdir(os.path.join(ROOT, "training", "configs")) if n.endswith(".json"))
)
def test_project_config_file_is_valid(name):
    path = os.path.join(ROOT, "training", "configs", name)
    config, args = parse_args(["--config", path, "--batch-size", "7"])
    with open(path, encoding="utf-8") as fh:
        values = json.load(fh)
    assert config.batch_size == 7  # flags win over the file
    assert {k: getattr(config, k) for k in values if k != "batch_size"} == {
        k: v for k, v in values.items() if k != "batch_size"
    }
    assert args.config == path


@pytest.mark.parametrize(
    "content,message",
    [
        ({"d_model": 128, "learnig_rate": 0.1}, "unknown setting(s) in {path}: learnig_rate"),
        ({"dropout": 1.5}, "dropout must be in [0, 1), got 1.5"),
        ({"d_model": "big"}, "d_model must be a positive integer, got 'big'"),
        ("{not json", "cannot read config file {path}"),
        (
            "[1, 2]",
            'config file {path} must hold a JSON object of settings, such as {{"max_steps": 1000, "dropout": 0.3}}; '
            "it holds an array",
        ),
        ('"max_steps=10"', "config file {path} must hold a JSON object of settings"),
        (
            "null",
            'config file {path} must hold a JSON object of settings, such as {{"max_steps": 1000, "dropout": 0.3}}; '
            "it holds null",
        ),
        ('{"length_penalty": NaN}', "length_penalty must be a finite number, got nan"),
        (
            {"max_grad_norm": None},
            "max_grad_norm must be > 0, or 0 for no gradient clipping (a finite number), got None",
        ),
        ({"normalize_before": "false"}, "normalize_before must be true or false, got 'false'"),
        ({"bf16": 1}, "bf16 must be true or false, got 1"),
        ({"data": 5}, "data must be a str, got 5"),
        ({"seed": 1.5}, "seed must be an integer, got 1.5"),
        ({"test_splits": "test_2016_flickr"}, "test_splits must be a list of split names, got 'test_2016_flickr'"),
    ],
)
def test_bad_config_file(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    with pytest.raises(SystemExit) as err:
        parse_args(["--config", str(path)])
    assert message.format(path=path) in str(err.value.code)


def test_vocab_size_floor_is_the_tokenizers():
    """validate() refuses exactly the sizes the tokenizer would refuse after the data is loaded."""
    from training.run_config import MIN_VOCAB_SIZE
    from training.tokenizer import train_tokenizer

    texts = ["A dog runs on the beach.", "Ein Hund rennt am Strand."] * 20
    with pytest.raises(ValueError, match=rf"vocab_size {MIN_VOCAB_SIZE - 1} is too small: at least {MIN_VOCAB_SIZE} "):
        train_tokenizer(texts, vocab_size=MIN_VOCAB_SIZE - 1)
    train_tokenizer(texts, vocab_size=MIN_VOCAB_SIZE)
    assert parse_args(["--vocab-size", str(MIN_VOCAB_SIZE)])[0].vocab_size == MIN_VOCAB_SIZE
    with pytest.raises(SystemExit, match=rf"vocab_size must be an integer >= {MIN_VOCAB_SIZE} "):
        parse_args(["--vocab-size", str(MIN_VOCAB_SIZE - 1)])


def test_missing_config_file(tmp_path):
    with pytest.raises(SystemExit) as err:
        parse_args(["--config", str(tmp_path / "nope.json")])
    assert "cannot read config file" in str(err.value.code)


def test_flag_overrides_a_bad_file_value(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"dropout": 1.5, "d_model": 64}), encoding="utf-8")
    config, _ = parse_args(["--config", str(path), "--dropout", "0.3"])
    assert config.dropout == 0.3 and config.d_model == 64


def test_cli_refuses_bad_values_before_any_work(tmp_path):
    """The real command: exit status 1, a message naming the setting, nothing imported or written."""
    out = tmp_path / "run"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"max_steps": 10, "colour": "blue"}), encoding="utf-8")
    cases = [
        (["--dropout", "1.5"], "dropout must be in [0, 1)"),
        (["--d-model", "250", "--attention-heads", "4"], "d_model (250) must be divisible by attention_heads (4)"),
        (["--config", str(config)], "unknown setting(s) in"),
        # Too small for the tokenizer: refused before the data is read and train_config.json is written (which
        # would make the rerun need --resume or --overwrite-output-dir).
        (["--vocab-size", "300"], "vocab_size must be an integer >= 360"),
        (["--length-penalty", "nan"], "length_penalty must be a finite number, got nan"),
    ]
    for argv, message in cases:
        result = subprocess.run(
            [sys.executable, "-m", "training.train", "--output-dir", str(out), *argv],
            cwd=ROOT,
            env=env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 1, result
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert not out.exists()
    # And inside the process: refused before torch, transformers or tokenizers were even imported.
    report = refuse("--output-dir", str(out), "--dropout", "1.5")
    assert report["heavy"] == [] and "dropout" in report["message"]
    assert not out.exists()


def test_cli_refuses_bad_data_naming_file_and_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.en").write_text("A man.\nA woman.\nA child.\n", encoding="utf-8")
    (data / "train.de").write_bytes("Ein Mann.\nEine Frau.\n".encode() + "Ein Kind in München.\n".encode("latin-1"))
    (data / "val.en").write_text("A dog.\n", encoding="utf-8")
    (data / "val.de").write_text("Ein Hund.\n", encoding="utf-8")
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "training.train", "--data", str(data), "--output-dir", str(out)],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1
    assert f"training: {data / 'train.de'}, line 3: not valid UTF-8" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()  # so the same command works once the data is fixed, without --resume

    # A missing validation split, in the same folder once train is fixed.
    (data / "train.de").write_text("Ein Mann.\nEine Frau.\nEin Kind.\n", encoding="utf-8")
    for name in ("val.en", "val.de"):
        (data / name).unlink()
    report = refuse("--data", str(data), "--output-dir", str(out))
    assert "No file for split 'val', language 'en'" in report["message"] and str(data) in report["message"]
    assert not out.exists()


def test_output_dir_that_is_a_file_is_refused_at_once(tmp_path):
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me\n", encoding="utf-8")
    report = refuse("--output-dir", str(taken))
    assert report["message"] == (
        f"training: --output-dir {taken} is a file, not a folder: choose another --output-dir or move the file away."
    )
    assert report["heavy"] == []  # before the data (or even torch) is loaded
    report = refuse("--output-dir", str(taken / "run"))
    assert (
        report["message"] == f"training: --output-dir {taken / 'run'} cannot be created: {taken} is a file. "
        "Choose another --output-dir."
    )
    assert taken.read_text(encoding="utf-8") == "keep me\n"


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nothing can be written into: a read-only tmpfs where this runs as root (root ignores file modes),
    else a folder without write permission."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"root without the right to mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_read_only_output_or_export_dir_is_refused_before_training(read_only_folder, tmp_path):
    """A folder that cannot be written is named at once, not after hours of training, and nothing is left behind."""
    report = refuse("--output-dir", str(read_only_folder / "run"))
    assert report["message"].startswith(
        f"training: --output-dir {read_only_folder / 'run'} cannot be written: "
        f"creating a file in {read_only_folder} failed ("
    )
    assert report["message"].endswith(f"Choose a --output-dir on a writable disk, or make {read_only_folder} writable.")
    assert report["heavy"] == []
    run = tmp_path / "run"
    report = refuse("--output-dir", str(run), "--export-dir", str(read_only_folder / "model"))
    assert report["message"].startswith(f"training: --export-dir {read_only_folder / 'model'} cannot be written: ")
    assert not run.exists()


def test_overwrite_output_dir_refuses_a_folder_that_is_not_a_run(tmp_path):
    """--overwrite-output-dir clears an earlier run of this command, never a folder of anything else."""
    folder = tmp_path / "thesis"
    (folder / "chapters").mkdir(parents=True)
    (folder / "notes.txt").write_text("keep me\n", encoding="utf-8")
    report = refuse("--output-dir", str(folder), "--overwrite-output-dir")
    assert report["message"] == (
        f"training: --overwrite-output-dir refused: {folder} does not look like a run of "
        "this command (no train_config.json); it holds chapters, notes.txt. Choose another "
        "--output-dir."
    )
    assert report["heavy"] == []
    # A run with something else put beside it: the other things are named and nothing is removed.
    (folder / "train_config.json").write_text("{}", encoding="utf-8")
    (folder / "checkpoints").mkdir()
    report = refuse("--output-dir", str(folder), "--overwrite-output-dir")
    assert report["message"] == (
        f"training: --overwrite-output-dir refused: {folder} holds a run but also chapters, "
        "notes.txt, which this command did not write. Move them away or choose another "
        "--output-dir."
    )
    assert sorted(os.listdir(folder)) == ["chapters", "checkpoints", "notes.txt", "train_config.json"]


def test_fresh_clone_without_shared_data_says_how_to_give_data(tmp_path):
    """The default --data is ../shared/data/multi30k, which a user's own clone does not have."""
    clone = tmp_path / "clone"
    clone.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "training.train", "--max-steps", "10"],
        cwd=clone,
        env={**env(), "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    assert (
        f"training: Data folder '../shared/data/multi30k' does not exist ({tmp_path / 'shared' / 'data' / 'multi30k'}). "
        "Pass --data with either a local folder of the Multi30k layout"
    ) in result.stderr
    assert "or a Hub dataset id such as bentrevett/multi30k" in result.stderr
    assert os.listdir(clone) == []  # no runs/ folder left behind


def test_length_penalty_candidates_are_numbers(tmp_path):
    config, _ = parse_args(["--length-penalty-candidates", "0.6", "1", "1.4"])
    assert config.length_penalty_candidates == [0.6, 1.0, 1.4]
    assert TrainConfig().length_penalty_candidates == []  # default: only --length-penalty
    with pytest.raises(SystemExit) as err:
        parse_args(["--length-penalty-candidates", "short"])
    assert err.value.code == 2  # argparse's usage error
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"length_penalty_candidates": [0.6, "long"]}), encoding="utf-8")
    with pytest.raises(SystemExit) as err:
        parse_args(["--config", str(bad)])
    assert "length_penalty_candidates must be a list of numbers" in str(err.value.code)


# ------------------------------------------------------------------------------------------ --export-dir


def test_export_dir_holding_the_users_files_is_refused_before_any_work(tmp_path):
    """--export-dir may only replace a model folder this project wrote: a folder of the user's own files is
    refused before training starts, with or without --overwrite-output-dir, and left as it was."""
    mine = tmp_path / "mine"
    (mine / "drafts").mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me\n", encoding="utf-8")
    for extra in ([], ["--overwrite-output-dir"]):
        report = refuse("--output-dir", str(tmp_path / "run"), "--export-dir", str(mine), *extra)
        assert report["message"] == (
            f"training: --export-dir {mine} holds drafts, notes.txt, which is not a model "
            "folder this project wrote; only such a folder is ever replaced. Name a new or "
            "empty folder."
        )
        assert report["heavy"] == []
    assert sorted(os.listdir(mine)) == ["drafts", "notes.txt"] and not (tmp_path / "run").exists()


def test_export_dir_that_holds_or_is_part_of_the_run_is_refused(tmp_path):
    run_dir = tmp_path / "runs" / "en-de"
    report = refuse("--output-dir", str(run_dir), "--export-dir", str(tmp_path / "runs"))
    assert report["message"] == (
        f"training: --export-dir {tmp_path / 'runs'} is or contains the run's --output-dir "
        f"{run_dir}: copying the model there would replace the run. Name another folder."
    )
    report = refuse("--output-dir", str(run_dir), "--export-dir", str(run_dir / "checkpoints"))
    assert report["message"].startswith(
        f"training: --export-dir {run_dir / 'checkpoints'} is part of the run in {run_dir} (checkpoints)"
    )
    assert not (tmp_path / "runs").exists()


def test_export_dir_naming_the_space_is_refused():
    """A slip such as --export-dir space (for space/model) must never replace the Space."""
    report = refuse("--output-dir", os.path.join(ROOT, "runs", "never-made"), "--export-dir", "space")
    assert report["message"].startswith("training: --export-dir space holds ")
    assert "app.py" in report["message"] and "not a model folder this project wrote" in report["message"]
    assert os.path.isfile(os.path.join(ROOT, "space", "app.py"))


def test_copy_to_export_dir_replaces_only_a_model_folder(tiny_model_dir, tmp_path):
    import shutil

    from training.export import copy_to_export_dir

    export = tmp_path / "export"
    copy_to_export_dir(tiny_model_dir, str(export), keep_previous=False)  # a new folder
    assert sorted(os.listdir(export)) == sorted(os.listdir(tiny_model_dir))
    (export / "head_atlas.json").write_text("{}", encoding="utf-8")  # the project's own analysis files may be there
    copy_to_export_dir(tiny_model_dir, str(export), keep_previous=True)
    kept = [name for name in os.listdir(tmp_path) if name.startswith("export.previous-")]
    assert len(kept) == 1 and (tmp_path / kept[0] / "head_atlas.json").is_file()
    copy_to_export_dir(tiny_model_dir, str(export), keep_previous=False)  # replaced, nothing kept aside
    assert sorted(os.listdir(tmp_path)) == sorted(["export", kept[0]])

    (export / "my-notes.md").write_text("keep me\n", encoding="utf-8")
    with pytest.raises(
        SystemExit,
        match=r"but it was not copied: --export-dir .* holds my-notes.md, which is not a "
        r"model folder this project wrote",
    ):
        copy_to_export_dir(tiny_model_dir, str(export), keep_previous=False)
    assert (export / "my-notes.md").read_text(encoding="utf-8") == "keep me\n"
    shutil.rmtree(export)
    export.mkdir()  # an empty folder is filled
    copy_to_export_dir(tiny_model_dir, str(export), keep_previous=True)
    assert (export / "config.json").is_file()
    assert sorted(os.listdir(tmp_path)) == sorted(["export", kept[0]])  # no staging folder left


# ------------------------------------------------------------------------------------------------ --resume


def saved_run(tmp_path, **settings):
    """A run folder whose train_config.json holds the defaults with `settings`, as train.py writes it."""
    out = tmp_path / "run"
    out.mkdir()
    values = {**dataclasses.asdict(TrainConfig(output_dir=str(out))), **settings}
    (out / "train_config.json").write_text(json.dumps(values, indent=2), encoding="utf-8")
    return out


def test_resume_takes_the_runs_own_settings(tmp_path):
    out = saved_run(tmp_path, d_model=128, attention_heads=2, ffn_dim=512, vocab_size=2000, dropout=0.3)
    config, _ = parse_args(["--output-dir", str(out), "--resume"])
    assert (config.d_model, config.attention_heads, config.ffn_dim, config.vocab_size, config.dropout) == (
        128,
        2,
        512,
        2000,
        0.3,
    )


def test_resume_allows_the_settings_that_may_change_and_refuses_the_others_by_name(tmp_path):
    out = saved_run(tmp_path, d_model=128, attention_heads=2, max_steps=1000)
    config, _ = parse_args(
        ["--output-dir", str(out), "--resume", "--max-steps", "2000", "--cooldown-steps", "500", "--d-model", "128"]
    )  # a flag equal to the run's setting is no contradiction
    assert (config.max_steps, config.cooldown_steps, config.d_model) == (2000, 500, 128)
    with pytest.raises(SystemExit) as err:
        parse_args(["--output-dir", str(out), "--resume", "--d-model", "256", "--dropout", "0.2"])
    message = str(err.value.code)
    assert message.startswith(
        "training: --resume: --d-model 256 (the run has 128); --dropout 0.2 (the run has 0.1). "
        f"A resumed run keeps its settings from {out / 'train_config.json'}; drop these flags"
    )
    assert "--max-steps" in message  # says what may change


# A train_config.json as train.py has written it (the settings of a real run, one key per TrainConfig field):
# a run that wrote it must still resume, with the same settings.
WRITTEN_TRAIN_CONFIG = {
    "data": "~/.cache/vanilla-transformer/multi30k-lc-tok",
    "source_lang": "en",
    "target_lang": "de",
    "output_dir": "runs/wu2021-tiny",
    "train_split": "train",
    "valid_split": "val",
    "test_splits": ["test_2016_flickr"],
    "max_train_samples": 0,
    "init_from": "",
    "vocab_size": 10000,
    "tokenizer_type": "bpe",
    "max_length": 128,
    "d_model": 128,
    "encoder_layers": 4,
    "decoder_layers": 4,
    "attention_heads": 4,
    "ffn_dim": 256,
    "dropout": 0.3,
    "attention_dropout": 0.0,
    "label_smoothing": 0.1,
    "position_embedding_type": "sinusoidal",
    "normalize_before": False,
    "learning_rate": 0.005,
    "warmup_steps": 2000,
    "cooldown_steps": 0,
    "adam_beta1": 0.9,
    "adam_beta2": 0.98,
    "adam_epsilon": 1e-09,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "batch_size": 64,
    "max_tokens": 8192,
    "bf16": False,
    "gradient_accumulation_steps": 1,
    "max_steps": 8000,
    "eval_steps": 500,
    "eval_samples": 300,
    "save_steps": 50,
    "keep_checkpoints": 10,
    "average_last": 10,
    "final_eval_limit": None,
    "num_beams": 5,
    "length_penalty": 1.0,
    "length_penalty_candidates": [],
    "logging_steps": 50,
    "seed": 42,
    "threads": 2,
    "overwrite_output_dir": False,
    "export_dir": "",
}


def test_resume_reads_a_train_config_json_as_runs_have_written_it(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "train_config.json").write_text(
        json.dumps({**WRITTEN_TRAIN_CONFIG, "output_dir": str(out)}, indent=2), encoding="utf-8"
    )
    # Settings added since the run was written take their defaults: the run goes on as it started.
    added_since = {"torch_compile": False, "torch_compile_backend": "inductor"}
    config, _ = parse_args(["--output-dir", str(out), "--resume"])
    assert dataclasses.asdict(config) == {**WRITTEN_TRAIN_CONFIG, **added_since, "output_dir": str(out)}
    config, _ = parse_args(["--output-dir", str(out), "--resume", "--max-steps", "9000", "--cooldown-steps", "1000"])
    assert dataclasses.asdict(config) == {
        **WRITTEN_TRAIN_CONFIG,
        **added_since,
        "output_dir": str(out),
        "max_steps": 9000,
        "cooldown_steps": 1000,
    }


def test_resume_with_a_damaged_settings_file_names_it(tmp_path):
    out = saved_run(tmp_path)
    (out / "train_config.json").write_text('{"d_model": 128,', encoding="utf-8")
    with pytest.raises(
        SystemExit,
        match=r"--resume: the run's settings file .*train_config.json is damaged "
        r"\(Expecting .*\)\. Restore it",
    ):
        parse_args(["--output-dir", str(out), "--resume"])
    (out / "train_config.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"is damaged \(it holds an array, not an object of settings\)"):
        parse_args(["--output-dir", str(out), "--resume"])


def test_a_model_too_large_for_this_machine_is_refused_before_any_work(tmp_path):
    from training.run_config import physical_memory

    report = refuse("--output-dir", str(tmp_path / "run"), "--d-model", "1000000000", "--attention-heads", "8")
    have = physical_memory() / 2**30
    assert re.fullmatch(
        r"training: bad configuration:\n  - the model would have [\d,]+ parameters: training needs "
        rf"about [\d,.]+ GiB for its weights, gradients and Adam's two moments alone, more than this "
        rf"machine's {have:,.1f} GiB; choose a smaller --d-model, --ffn-dim, --vocab-size or fewer "
        r"layers",
        report["message"],
    ), report["message"]
    assert report["heavy"] == [] and not (tmp_path / "run").exists()  # nothing left behind to block a rerun


class FakeTokenizer:
    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2

    def __len__(self):
        return 400


def test_model_settings_make_the_models_configuration_and_read_back_from_it():
    """One table (MODEL_SETTINGS) says which TransformerConfig arguments each model setting gives; a new model
    is built from it and an --init-from model's architecture is read back through it."""
    from training.run_config import ARCHITECTURE, MODEL_SETTINGS, REGULARISATION, architecture_of
    from training.train import model_config

    assert MODEL_SETTINGS["attention_heads"] == ("encoder_attention_heads", "decoder_attention_heads")
    assert MODEL_SETTINGS["ffn_dim"] == ("encoder_ffn_dim", "decoder_ffn_dim")
    assert ARCHITECTURE == (
        "vocab_size",
        "d_model",
        "encoder_layers",
        "decoder_layers",
        "attention_heads",
        "ffn_dim",
        "position_embedding_type",
        "normalize_before",
    )
    assert REGULARISATION == ("dropout", "attention_dropout", "label_smoothing")
    config = TrainConfig(
        vocab_size=400,
        max_length=600,
        d_model=64,
        encoder_layers=2,
        decoder_layers=5,
        attention_heads=8,
        ffn_dim=100,
        dropout=0.3,
        attention_dropout=0.2,
        label_smoothing=0.0,
        position_embedding_type="learned",
        normalize_before=True,
    )
    model_cfg = model_config(config, FakeTokenizer())
    assert {
        name: getattr(model_cfg, name)
        for name in (
            "d_model",
            "encoder_layers",
            "decoder_layers",
            "encoder_attention_heads",
            "decoder_attention_heads",
            "encoder_ffn_dim",
            "decoder_ffn_dim",
            "dropout",
            "attention_dropout",
            "label_smoothing",
            "position_embedding_type",
            "normalize_before",
        )
    } == dict(
        d_model=64,
        encoder_layers=2,
        decoder_layers=5,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=100,
        decoder_ffn_dim=100,
        dropout=0.3,
        attention_dropout=0.2,
        label_smoothing=0.0,
        position_embedding_type="learned",
        normalize_before=True,
    )
    assert (model_cfg.vocab_size, model_cfg.max_position_embeddings) == (400, 608)  # the tokenizer's; max_length + 8
    assert (
        model_cfg.pad_token_id,
        model_cfg.bos_token_id,
        model_cfg.eos_token_id,
        model_cfg.decoder_start_token_id,
    ) == (0, 1, 2, 1)
    assert architecture_of(model_cfg) == {name: getattr(config, name) for name in ARCHITECTURE}


def test_parameter_count_is_the_models():
    from conftest import tiny_config

    from modeling import TransformerForConditionalGeneration

    config = TrainConfig(d_model=32, ffn_dim=64, encoder_layers=2, decoder_layers=3, attention_heads=2, vocab_size=400)
    model = TransformerForConditionalGeneration(
        tiny_config(
            vocab_size=400,
            d_model=32,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            encoder_layers=2,
            decoder_layers=3,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
        )
    )
    assert config.parameter_count() == sum(p.numel() for p in model.parameters())
