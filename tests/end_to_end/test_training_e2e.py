"""A tiny end-to-end training run on a slice of Multi30k, through the real command line
(`python -m training.train`), then everything a user does with its output: the loss falls, BLEU is computed
through sacrebleu, `model/` is a complete Hub repository with a model card `huggingface_hub` parses, and the
`evaluate` and `translate` commands work on it. Re-running into the same folder without `--resume` is refused.

The run is done once per session (`trained_run` in conftest.py, `shared_tiny_run` in tiny_run.py) and shared
with test_training_resume.py (whose resumed run must reproduce its losses) and test_pipeline.py.
"""

import json
import subprocess
import os
import sys
import time

import pytest
from conftest import ROOT
from tiny_run import (
    CHECKPOINT_STATE_FILES,
    EMPTY_PAIRS,
    EVAL_LIMIT,
    EVAL_STEPS,
    LOGGING_STEPS,
    MAX_STEPS,
    SAVE_STEPS,
    read_json,
    child_env,
    read_log,
    run,
    snapshot,
    train_command,
)


# ---------------------------------------------------------------------------------------------- the run


def test_run_layout(trained_run):
    out = trained_run.out
    assert sorted(os.listdir(out)) == ["checkpoints", "log.jsonl", "model", "tokenizer", "train_config.json"]
    config = read_json(out, "train_config.json")
    assert config["max_steps"] == MAX_STEPS and config["d_model"] == 32 and config["data"] == trained_run.data
    assert config["adam_beta2"] == 0.98 and config["adam_epsilon"] == 1e-9 and config["label_smoothing"] == 0.1


def test_loss_falls(trained_run):
    log = read_log(trained_run.out)
    losses = [(e["step"], e["loss"]) for e in log if "loss" in e]
    assert [s for s, _ in losses] == list(range(LOGGING_STEPS, MAX_STEPS + 1, LOGGING_STEPS))
    first, last = losses[0][1], losses[-1][1]
    assert last < first - 0.5, losses
    assert min(l for _, l in losses[-3:]) < min(l for _, l in losses[:3]), losses
    evals = [e for e in log if "eval_loss" in e]
    assert [e["step"] for e in evals] == list(range(EVAL_STEPS, MAX_STEPS + 1, EVAL_STEPS))
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    # Learning rate (the one used by step s, i.e. after s - 1 scheduler steps): linear warm-up over 8 steps to
    # 0.003, then inverse-square-root decay.
    lrs = {e["step"]: e["learning_rate"] for e in log if "learning_rate" in e}
    assert lrs[5] == pytest.approx(0.003 * 4 / 8)
    for s in range(10, MAX_STEPS + 1, LOGGING_STEPS):
        assert lrs[s] == pytest.approx(0.003 * (8 / (s - 1)) ** 0.5), (s, lrs)
    times = [e["time_s"] for e in log]
    assert times == sorted(times)


def test_periodic_validation_bleu_in_log(trained_run):
    evals = [e for e in read_log(trained_run.out) if "eval_loss" in e]
    for e in evals:
        for key in ("eval_bleu", "eval_bleu_lc_tok", "eval_chrf"):
            assert isinstance(e[key], float) and 0.0 <= e[key] <= 100.0, e
        assert e["eval_sentences"] == EVAL_LIMIT
    state = read_json(trained_run.out, "checkpoints", f"checkpoint-{MAX_STEPS}", "trainer_state.json")
    assert state["best_metric"] == max(e["eval_bleu"] for e in evals)
    assert os.path.basename(state["best_model_checkpoint"]) in {f"checkpoint-{e['step']}" for e in evals}


def test_data_problems_are_reported(trained_run):
    out = trained_run.result.stdout
    assert f"train: 300 pairs ({EMPTY_PAIRS} empty skipped, " in out, out[-3000:]
    truncated = int(out.split(f"({EMPTY_PAIRS} empty skipped, ")[1].split(" truncated")[0])
    assert truncated >= 2  # at least the over-long pair, both sides
    assert "periodic validation on 16 pairs" in out
    assert f"skipped {EMPTY_PAIRS} pairs with an empty side" in out + trained_run.result.stderr


def test_checkpoints_hold_optimizer_scheduler_and_rng_state(trained_run):
    from training.train import complete_checkpoints

    ckpts = complete_checkpoints(os.path.join(trained_run.out, "checkpoints"))
    assert [os.path.basename(p) for p in ckpts] == [
        f"checkpoint-{s}" for s in range(SAVE_STEPS, MAX_STEPS + 1, SAVE_STEPS)
    ]
    for path in ckpts:
        for name in CHECKPOINT_STATE_FILES:
            assert os.path.getsize(os.path.join(path, name)) > 0, (path, name)
    assert read_json(ckpts[-1], "trainer_state.json")["global_step"] == MAX_STEPS


def test_final_results_computed_with_sacrebleu(trained_run):
    import sacrebleu

    results = read_json(trained_run.model, "eval_results.json")
    assert set(results) >= {"chosen", "train_seconds", "results", "candidates_on_validation"}
    assert set(results["results"]) == {"val", "test_2016_flickr"}
    assert results["chosen"] in results["candidates_on_validation"]
    # Average of the last 2, best, last: the best is evaluated apart from the last only when it is another one.
    state = read_json(trained_run.out, "checkpoints", f"checkpoint-{MAX_STEPS}", "trainer_state.json")
    best_is_last = os.path.basename(state["best_model_checkpoint"]) == f"checkpoint-{MAX_STEPS}"
    assert len(results["candidates_on_validation"]) == (2 if best_is_last else 3), results["candidates_on_validation"]
    for split, r in results["results"].items():
        for key in ("bleu", "bleu_lc_tok", "chrf"):
            assert isinstance(r[key], float) and 0.0 <= r[key] <= 100.0, (split, r)
        assert r["bleu_signature"] == f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"
        assert r["chrf_signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:")
        assert r["sentences"] == EVAL_LIMIT and r["split"] == split
        assert (r["num_beams"], r["length_penalty"]) == (4, 0.6)
    # The chosen candidate is the best one on validation.
    val = results["results"]["val"]
    best = max((c["bleu_lc_tok"], c["bleu"], c["chrf"]) for c in results["candidates_on_validation"].values())
    assert (val["bleu_lc_tok"], val["bleu"], val["chrf"]) == best
    assert val["chrf"] > 0  # real (if poor) German was scored, not empty strings


def test_model_folder_carries_the_translations_it_was_scored_on(trained_run):
    """translations/SPLIT.de holds the system output behind each score, one sentence per line: rescoring it
    against the split's references gives the recorded BLEU and chrF again."""
    from training.data import load_corpus
    from training.metrics import score

    results = read_json(trained_run.model, "eval_results.json")["results"]
    assert sorted(os.listdir(os.path.join(trained_run.model, "translations"))) == sorted(f"{s}.de" for s in results)
    for split, r in results.items():
        with open(os.path.join(trained_run.model, "translations", f"{split}.de"), encoding="utf-8") as fh:
            lines = fh.read().split("\n")
        assert lines[-1] == "" and len(lines) - 1 == r["sentences"]
        references = load_corpus(trained_run.data, split, "en", "de").target[: r["sentences"]]
        again = score(lines[:-1], references, "de", data_folder=trained_run.data, split=split)
        assert (again["bleu"], again["bleu_lc_tok"], again["chrf"]) == (r["bleu"], r["bleu_lc_tok"], r["chrf"])


def test_final_candidates_are_each_evaluated_once():
    from training.export import final_candidates

    c = [f"/r/checkpoints/checkpoint-{s}" for s in (30, 60, 90, 120)]
    average = ("average of the last 2 checkpoints (checkpoint-90, checkpoint-120)", c[2:])
    assert final_candidates(c, c[1], 2) == [
        average,
        ("best validation checkpoint (checkpoint-60)", [c[1]]),
        ("last checkpoint (checkpoint-120)", [c[3]]),
    ]
    # The best checkpoint is the last one: one candidate under both names.
    assert final_candidates(c, c[3], 2) == [
        average,
        ("last checkpoint (checkpoint-120), also the best on validation", [c[3]]),
    ]
    # An average of one checkpoint is the last checkpoint.
    assert final_candidates(c, c[1], 1) == [
        ("best validation checkpoint (checkpoint-60)", [c[1]]),
        ("last checkpoint (checkpoint-120)", [c[3]]),
    ]
    assert final_candidates(c[:1], c[0], 5) == [
        ("last checkpoint (checkpoint-30), also the best on validation", [c[0]])
    ]
    assert final_candidates(c[:1], None, 5) == [("last checkpoint (checkpoint-30)", [c[0]])]


def test_greedy_short_run_saves_and_exports(data_dir, tmp_path):
    """--num-beams 1 everywhere: the checkpoints' and the model's generation_config.json hold no beam settings
    (transformers refuses to save them with one beam), the length-penalty search is skipped, and a short run
    evaluates its final candidates on 100 sentences by default (not whole splits)."""
    out = tmp_path / "run"
    flags = train_command(out, data_dir, "--num-beams", "1", "--length-penalty-candidates", "0.6", "1.4")
    for flag, value in (("--max-steps", "4"), ("--save-steps", "2"), ("--eval-steps", "2"), ("--logging-steps", "2")):
        flags[flags.index(flag) + 1] = value
    at = flags.index("--final-eval-limit")
    del flags[at : at + 2]
    result = run(flags)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    from transformers import GenerationConfig

    gen = read_json(out, "model", "generation_config.json")
    assert {k: v for k, v in gen.items() if k != "transformers_version"} == {
        "num_beams": 1,
        "max_length": 40,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "decoder_start_token_id": 1,
    }
    for step in (2, 4):  # the Trainer's own saves: greedy, with transformers' neutral defaults at most
        folder = out / "checkpoints" / f"checkpoint-{step}"
        gen = read_json(folder, "generation_config.json")
        assert gen["num_beams"] == 1 and gen.get("length_penalty", 1.0) == 1.0 and not gen.get("early_stopping"), gen
        GenerationConfig.from_pretrained(folder).validate(strict=True)  # what save_pretrained demands
    assert "greedy decoding (--num-beams 1) has no length penalty: --length-penalty-candidates ignored" in result.stdout
    record = read_json(out, "model", "eval_results.json")
    assert "length_penalty_on_validation" not in record
    for split in ("val", "test_2016_flickr"):
        r = record["results"][split]
        assert (r["num_beams"], r["length_penalty"], r["sentences"]) == (1, None, 100), r
    names = list(record["candidates_on_validation"])
    assert names[0] == "average of the last 2 checkpoints (checkpoint-2, checkpoint-4)" and len(names) in (2, 3)
    assert "- decoding: greedy\n" in (out / "model" / "README.md").read_text(encoding="utf-8")


def test_metrics_match_sacrebleu_directly():
    import sacrebleu

    from training.metrics import moses_lc_tokenize, score

    hyps = ["Ein Hund läuft über die Wiese.", "Zwei Männer spielen Fußball!", "Eine Frau, die liest."]
    refs = ["Ein Hund rennt über die Wiese.", "Zwei Männer spielen Fußball.", "Eine Frau liest ein Buch."]
    r = score(hyps, refs, "de")
    assert r["bleu"] == round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2)
    assert r["chrf"] == round(sacrebleu.corpus_chrf(hyps, [refs]).score, 2)
    assert moses_lc_tokenize(["Zwei Männer spielen Fußball!"], "de") == ["zwei männer spielen fußball !"]
    tok = sacrebleu.corpus_bleu(moses_lc_tokenize(hyps, "de"), [moses_lc_tokenize(refs, "de")], tokenize="none")
    assert r["bleu_lc_tok"] == round(tok.score, 2)
    assert score(refs, refs, "de")["bleu"] == 100.0


def test_model_folder_is_a_complete_hub_repository(trained_run):
    from safetensors.torch import load_file

    folder = trained_run.model
    files = set(os.listdir(folder))
    assert files == {
        "README.md",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "eval_results.json",
        "configuration_transformer.py",
        "modeling_transformer.py",
        "fast_paths.py",
        "pipeline_translation.py",
        "tokenizer.json",
        "tokenizer_config.json",
        "translations",
    }, files
    config = read_json(folder, "config.json")
    assert config["auto_map"] == {
        "AutoConfig": "configuration_transformer.TransformerConfig",
        "AutoModelForSeq2SeqLM": "modeling_transformer.TransformerForConditionalGeneration",
    }
    assert config["custom_pipelines"]["translation"]["impl"] == "pipeline_translation.TranslationPipeline"
    assert config["custom_pipelines"]["translation"]["pt"] == ["AutoModelForSeq2SeqLM"]
    assert (config["model_type"], config["d_model"], config["vocab_size"]) == ("transformer", 32, 400)
    # what the Space and the tools read about the model, from config.json rather than the card
    assert (config["source_lang"], config["target_lang"], config["trained_on"]) == ("en", "de", "Multi30k")
    assert (config["pad_token_id"], config["bos_token_id"], config["eos_token_id"]) == (0, 1, 2)
    gen = read_json(folder, "generation_config.json")
    assert {k: v for k, v in gen.items() if k != "transformers_version"} == {
        "num_beams": 4,
        "length_penalty": 0.6,
        "early_stopping": True,
        "max_length": 40,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "decoder_start_token_id": 1,
    }
    with open(os.path.join(folder, "pipeline_translation.py"), encoding="utf-8") as fh:
        with open(os.path.join(ROOT, "modeling", "pipeline_translation.py"), encoding="utf-8") as ref:
            assert fh.read() == ref.read()
    for name in ("configuration_transformer.py", "modeling_transformer.py", "fast_paths.py", "pipeline_translation.py"):
        with open(os.path.join(folder, name), encoding="utf-8") as fh:
            code = fh.read()
        # Flat remote code: nothing imported from this project's packages.
        for package in ("modeling", "configuration", "training"):
            assert f"from {package}" not in code and f"import {package}" not in code, (name, package)
    weights = load_file(os.path.join(folder, "model.safetensors"))
    assert any(w.shape == (400, 32) for w in weights.values())
    # The tokenizer is the run's own.
    with (
        open(os.path.join(folder, "tokenizer.json"), "rb") as a,
        open(os.path.join(trained_run.out, "tokenizer", "tokenizer.json"), "rb") as b,
    ):
        assert a.read() == b.read()
    # --export-dir holds the same files.
    assert snapshot_hashes(trained_run.export) == snapshot_hashes(folder)


def snapshot_hashes(folder):
    return {k: v[2] for k, v in snapshot(folder).items()}


def test_model_folder_loads_with_auto_classes(trained_run):
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(trained_run.model)
    model = AutoModelForSeq2SeqLM.from_pretrained(trained_run.model, trust_remote_code=True).eval()
    assert len(tok) == model.config.vocab_size == 400
    assert model.generation_config.num_beams == 4 and model.generation_config.length_penalty == 0.6
    batch = tok(["A man is riding a bike.", "Two dogs play."], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=8)
    assert out.shape[0] == 2 and out[0, 0] == 1


def test_model_card_validates(trained_run):
    from huggingface_hub import ModelCard

    card = ModelCard.load(os.path.join(trained_run.model, "README.md"))
    data = card.data
    assert data.language == ["en", "de"]
    assert data.license == "apache-2.0"
    assert data.datasets and data.metrics == ["bleu", "chrf"]
    assert data.pipeline_tag == "translation" and data.library_name == "transformers"
    results = read_json(trained_run.model, "eval_results.json")["results"]
    key = {"bleu": "bleu_lc_tok", "sacrebleu": "bleu", "chrf": "chrf"}
    seen = set()
    assert data.eval_results, "model-index did not parse into eval results"
    for er in data.eval_results:
        assert er.task_type == "translation"
        assert er.metric_value == results[er.dataset_split][key[er.metric_type]], er
        seen.add((er.dataset_split, er.metric_type))
    assert seen == {(split, metric) for split in ("val", "test_2016_flickr") for metric in key}
    # The card round-trips through huggingface_hub's own serialisation unchanged in content.
    again = ModelCard(str(card))
    assert again.data.to_dict() == data.to_dict()
    text = card.text
    assert f"python -m training.train --data {trained_run.data} --output-dir {trained_run.out}" in text
    assert f"--max-steps {MAX_STEPS}" in text  # the command that reproduces it
    assert "wall-clock" in text and str(results["val"]["bleu_lc_tok"]) in text


# ------------------------------------------------------------------------------------ the other commands


def test_evaluate_cli_json(trained_run):
    result = run(
        [
            sys.executable,
            "-m",
            "training.evaluate",
            trained_run.model,
            "--data",
            trained_run.data,
            "--split",
            "val",
            "--limit",
            str(EVAL_LIMIT),
            "--json",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    for key in ("bleu", "bleu_lc_tok", "chrf", "bleu_signature", "chrf_signature"):
        assert key in report
    assert report["sentences"] == EVAL_LIMIT and report["split"] == "val" and report["num_beams"] == 4
    # Same model, sentences and decoding as the run's final validation: the same numbers.
    final = read_json(trained_run.model, "eval_results.json")["results"]["val"]
    for key in ("bleu", "bleu_lc_tok", "chrf", "bleu_signature"):
        assert report[key] == final[key], key


def test_evaluate_cli_text(trained_run):
    result = run(
        [
            sys.executable,
            "-m",
            "training.evaluate",
            trained_run.model,
            "--data",
            trained_run.data,
            "--split",
            "test_2016_flickr",
            "--limit",
            "4",
            "--num-beams",
            "1",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 sentences, beam 1" in result.stdout
    assert "lowercased, Moses-tokenised" in result.stdout and "nrefs:1|case:mixed" in result.stdout


def test_translate_cli_keeps_lines(trained_run, tmp_path):
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from training.translate_utils import translate_batch

    lines = ["A dog runs on the beach.", "", "Two men are talking.", "   ", "A girl in a red dress."]
    result = run(
        [sys.executable, "-m", "training.translate", trained_run.model, "--num-beams", "2"],
        input="\n".join(lines) + "\n",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout.split("\n")
    assert out[-1] == "" and len(out) - 1 == len(lines), out
    out = out[:-1]
    # Blank lines stay blank; every other line is the model's own translation of that line, in order (a model
    # trained for a few steps may well translate one into an empty line: that is its output, not a dropped line).
    assert out[1] == "" and out[3] == ""
    tok = AutoTokenizer.from_pretrained(trained_run.model)
    model = AutoModelForSeq2SeqLM.from_pretrained(trained_run.model, trust_remote_code=True)
    with torch.no_grad():
        expected = translate_batch(model, tok, [lines[0], lines[2], lines[4]], num_beams=2)
    assert [out[0], out[2], out[4]] == expected

    # Files: --input/--output, and an existing output is not overwritten without --force.
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    dst.write_text("keep me\n", encoding="utf-8")
    refused = run(
        [sys.executable, "-m", "training.translate", trained_run.model, "--input", str(src), "--output", str(dst)]
    )
    assert refused.returncode != 0 and "--force" in refused.stderr
    assert dst.read_text(encoding="utf-8") == "keep me\n"
    forced = run(
        [
            sys.executable,
            "-m",
            "training.translate",
            trained_run.model,
            "--input",
            str(src),
            "--output",
            str(dst),
            "--force",
            "--num-beams",
            "2",
        ]
    )
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert dst.read_text(encoding="utf-8").split("\n")[:-1] == out


def test_existing_output_dir_is_refused_and_untouched(trained_run):
    before = snapshot(trained_run.out)
    start = time.time()
    result = run(train_command(trained_run.out, trained_run.data))
    assert result.returncode != 0
    assert f"{trained_run.out} already holds a run (4 checkpoints)" in result.stderr
    assert "--resume" in result.stderr and "--overwrite-output-dir" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(trained_run.out) == before
    assert time.time() - start < 60  # refused before any work (no tokenizer, no model)


def test_evaluate_reads_the_language_pair_from_the_model_card(trained_run, tmp_path):
    from training.evaluate import card_languages

    assert card_languages(trained_run.model) == ("en", "de")
    with open(os.path.join(trained_run.model, "README.md"), encoding="utf-8") as fh:
        card = fh.read()
    (tmp_path / "README.md").write_text(
        card.replace("language:\n- en\n- de\n", "language:\n- fr\n- cs\n", 1), encoding="utf-8"
    )
    assert card_languages(str(tmp_path)) == ("fr", "cs")
    assert card_languages(str(tmp_path / "no-card")) is None


def test_length_penalty_chosen_on_validation(trained_run, tmp_path):
    """A finished run exported again with `--length-penalty-candidates` (section 6.1: alpha chosen on the
    development set): every value is scored on val, the best one (a tie keeps the configured 0.6) decodes the
    test split and lands in generation_config.json and the model card; the first export is kept aside."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(trained_run.out, out, symlinks=True)
    result = run(
        train_command(
            out,
            trained_run.data,
            "--resume",
            "--export-dir",
            "",  # not the shared run's
            "--length-penalty-candidates",
            "0.6",
            "0",
            "3",
        )
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "length penalty chosen on validation" in result.stdout
    assert any(name.startswith("model.previous-") for name in os.listdir(out))  # the first export is kept

    record = read_json(out, "model", "eval_results.json")
    scores = record["length_penalty_on_validation"]
    assert set(scores) == {"0.6", "0", "3"}
    chosen = record["results"]["val"]["length_penalty"]
    assert scores[f"{chosen:g}"] == max(scores.values())
    if scores["0.6"] == max(scores.values()):
        assert chosen == 0.6
    assert record["results"]["val"]["bleu_lc_tok"] == scores[f"{chosen:g}"]
    assert record["results"]["test_2016_flickr"]["length_penalty"] == chosen
    assert read_json(out, "model", "generation_config.json")["length_penalty"] == chosen
    with open(os.path.join(out, "model", "README.md"), encoding="utf-8") as fh:
        card = fh.read()
    assert (
        f"length penalty {float(chosen)} (transformers' `length ** alpha` form; chosen on val among 0, 0.6, 3)" in card
    )


def test_translate_refuses_input_that_is_not_utf8(trained_run, tmp_path):
    latin1 = "Ein Mädchen läuft.\n".encode("latin-1")
    result = subprocess.run(
        [sys.executable, "-m", "training.translate", trained_run.model],
        input=latin1,
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        timeout=600,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert "translate: the input is not UTF-8 text ('utf-8' codec can't decode byte 0xe4" in stderr
    assert "convert it first, e.g. iconv -f latin1 -t utf-8." in stderr
    (tmp_path / "in.txt").write_bytes(latin1)
    result = run([sys.executable, "-m", "training.translate", trained_run.model, "--input", str(tmp_path / "in.txt")])
    assert result.returncode == 1 and f"translate: {tmp_path / 'in.txt'} is not UTF-8 text" in result.stderr


def test_a_model_folder_without_a_tokenizer_says_so(trained_run, tmp_path):
    import shutil

    from training.evaluate import load

    folder = tmp_path / "no-tokenizer"
    shutil.copytree(trained_run.model, folder, ignore=shutil.ignore_patterns("tokenizer*"))
    with pytest.raises(
        SystemExit,
        match=r"the folder has no tokenizer \(none of tokenizer.json, tokenizer_config.json, "
        r"source.spm\); save it beside the model: tokenizer.save_pretrained\(folder\)",
    ):
        load(str(folder))
