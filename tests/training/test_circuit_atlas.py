"""`python -m training.circuit_atlas`: pairs from swapped words or a TSV file, mean EAP-IG scores, the two
faithfulness curves and the circuit written into the model folder, and the command's errors."""

import json
import os
import shutil

import pytest

from conftest import SHIPPED_MODEL
from training import circuit_atlas


@pytest.fixture(scope="module")
def shipped_copy(tmp_path_factory):
    """A copy of the shipped model folder (the command writes into its model folder; never into space/model)."""
    if not os.path.isfile(os.path.join(SHIPPED_MODEL, "model.safetensors")):
        pytest.skip(f"the shipped model is not in {SHIPPED_MODEL}")
    folder = tmp_path_factory.mktemp("circuit_atlas") / "model"
    shutil.copytree(SHIPPED_MODEL, folder, ignore=shutil.ignore_patterns("head_atlas*", "*.png", "circuits"))
    return str(folder)


def test_swap_word_replaces_whole_words_and_keeps_a_capital():
    assert circuit_atlas.swap_word("A man and a Man.", "man", "woman") == "A woman and a Woman."
    assert circuit_atlas.swap_word("A manly fireman, a man-made hut.", "man", "woman") is None
    assert circuit_atlas.swap_word("The dog's ball.", "dog", "cat") == "The cat's ball."


@pytest.mark.parametrize("swap", ["man", "man:man", "man:woman=Mann", "a b:c", "man:woman=Frau:Frau"])
def test_malformed_swaps_are_refused(swap, capsys):
    with pytest.raises(SystemExit):
        circuit_atlas.parse_args(["model", "--swap", swap])
    assert "expected two different" in capsys.readouterr().err


def test_command_writes_the_circuit_and_figure(shipped_copy, data_dir):
    args = [
        shipped_copy,
        "--swap",
        "man:woman=Mann:Frau",
        "--data",
        data_dir,
        "--max-pairs",
        "3",
        "--ks",
        "0",
        "10",
        "50",
        "1177",
    ]
    assert circuit_atlas.main(args) == 0
    out = os.path.join(shipped_copy, "circuits")
    assert sorted(os.listdir(out)) == ["man-woman.json", "man-woman.png"]  # no temporary file left behind
    with open(os.path.join(out, "man-woman.json"), encoding="utf-8") as fh:
        result = json.load(fh)
    assert result["num_pairs"] == 3 and len(result["pairs"]) == 3 and result["num_edges"] == 1177
    for pair in result["pairs"]:
        assert (pair["target"], pair["contrast"]) == ("▁Mann", "▁Frau")
        assert "woman" in pair["corrupted"].lower() and pair["clean_metric"] > pair["corrupted_metric"]
    for kind in ("top", "connected"):
        curve = result["curves"][kind]
        assert curve["ks"] == [0, 10, 50, 1177] and curve["pairs"] == 3 and len(curve["per_pair"]) == 3
        assert curve["faithfulness"][0] == 0.0 and curve["faithfulness"][-1] == pytest.approx(1.0, abs=1e-5)
        assert result["smallest_k"][kind] == curve["smallest_k"]
    circuit = result["circuit"]
    assert circuit["circuit"] == "connected" and len(circuit["edges"]) == circuit["k"]
    assert circuit["edges_on_a_path_to_the_logits"] == circuit["k"]  # connected: every edge reaches the logits
    assert "logits" in circuit["nodes"]
    assert len(result["edges"]) == 1177 and abs(result["edges"][0]["score"]) >= abs(result["edges"][1]["score"])
    assert result["seconds"]["attribution_per_pair"] > 0

    with pytest.raises(SystemExit, match=r"man-woman.json exists; pass --overwrite"):
        circuit_atlas.main(args)
    assert circuit_atlas.main(args + ["--overwrite", "--ks", "0", "1177"]) == 0
    with open(os.path.join(out, "man-woman.json"), encoding="utf-8") as fh:
        assert json.load(fh)["curves"]["top"]["ks"] == [0, 1177]


def test_pairs_file_with_and_without_target_words(shipped_copy, tmp_path):
    pairs = tmp_path / "gender.tsv"
    pairs.write_text(
        "clean\tcorrupted\ttarget\tcontrast\n"
        "A man is riding a bike.\tA woman is riding a bike.\n"
        "\n"
        "A man is riding a bike.\tA woman is riding a bike.\tMann\tFrau\n"
        "A dog runs.\tA hippopotamus runs.\n",
        encoding="utf-8",
    )
    assert circuit_atlas.main([shipped_copy, "--pairs", str(pairs), "--ks", "0", "20", "1177"]) == 0
    with open(os.path.join(shipped_copy, "circuits", "gender.json"), encoding="utf-8") as fh:
        result = json.load(fh)
    auto, given = result["pairs"]
    # no target words: the first token where the two greedy translations differ (the article: Ein / Eine)
    assert (auto["target"], auto["contrast"], auto["position"]) == ("▁Ein", "▁Eine", 0)
    assert auto["corrupted_translation"].startswith("Eine Frau")
    assert (given["target"], given["contrast"], given["position"]) == ("▁Mann", "▁Frau", 1)
    assert result["skipped"] == {"the two sources differ in token length": 1}


def test_command_errors(tmp_path, shipped_copy, data_dir):
    def main(argv):  # a name nothing else writes, so that the overwrite check does not answer first
        return circuit_atlas.main(argv + ([] if "--name" in argv else ["--name", "errors"]))

    swap = ["--swap", "man:woman", "--data", data_dir]
    with pytest.raises(SystemExit, match="model folder .*does not exist"):
        main([str(tmp_path / "nowhere"), *swap])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=r"not a model folder \(no config.json"):
        main([str(tmp_path / "empty"), *swap])
    with pytest.raises(SystemExit, match="data folder .*does not exist"):
        main([shipped_copy, "--swap", "man:woman", "--data", str(tmp_path / "no-data")])
    with pytest.raises(SystemExit, match=r"unknown word 'xylophonist': none of the 1014 val sentences"):
        main([shipped_copy, "--swap", "xylophonist:woman", "--data", data_dir])
    with pytest.raises(SystemExit, match=r"no pairs made from the val split: .*differ in token length"):
        main([shipped_copy, "--swap", "dog:hippopotamus", "--data", data_dir, "--max-pairs", "2"])
    katze = tmp_path / "katze.tsv"
    katze.write_text("A man is riding a bike.\tA woman is riding a bike.\tKatze\tFrau\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"no pairs made from .*katze.tsv: 1 candidate .*translation has no 'Katze'"):
        main([shipped_copy, "--pairs", str(katze)])
    with pytest.raises(SystemExit, match="one's token pieces begin the other's"):
        main([shipped_copy, "--swap", "dog:cat=H:Hündin", "--data", data_dir, "--max-pairs", "1"])
    bad = tmp_path / "bad.tsv"
    bad.write_text("A man.\tA woman.\tMann\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"bad.tsv, line 1: expected clean <TAB> corrupted"):
        main([shipped_copy, "--pairs", str(bad)])
    with pytest.raises(SystemExit, match="pairs file .*does not exist"):
        main([shipped_copy, "--pairs", str(tmp_path / "none.tsv")])
    with pytest.raises(SystemExit, match=r"--ks 5000: the graph has 1177 edges"):
        main([shipped_copy, *swap, "--max-pairs", "1", "--ks", "0", "5000", "--name", "big"])
    with pytest.raises(SystemExit):
        main([shipped_copy, *swap, "--name", "../escape"])
    circuits = os.path.join(shipped_copy, "circuits")  # made by an earlier test, or never
    assert not any(
        name.startswith(("big", "errors")) for name in (os.listdir(circuits) if os.path.isdir(circuits) else [])
    )


def test_mean_ablation_pairs_need_no_corrupted_column(shipped_copy, data_dir, tmp_path, capsys):
    pairs = tmp_path / "mean.tsv"
    pairs.write_text(
        "A man is riding a bike.\tMann\tFrau\n"  # no corrupted column
        "A dog runs.\tA hippopotamus runs.\n",
        encoding="utf-8",
    )  # lengths differ: fine here
    args = [
        shipped_copy,
        "--pairs",
        str(pairs),
        "--data",
        data_dir,
        "--mean-ablation",
        "--references",
        "8",
        "--ks",
        "0",
        "50",
        "1177",
    ]
    assert circuit_atlas.main(args) == 0
    with open(os.path.join(shipped_copy, "circuits", "mean.json"), encoding="utf-8") as fh:
        result = json.load(fh)
    assert result["ablation"].startswith("mean: each node's mean output over the first 8 val sentences")
    assert result["num_pairs"] == 2 and result["skipped"] == {}
    given, auto = result["pairs"]
    assert given["corrupted"] is None and (given["target"], given["contrast"]) == ("▁Mann", "▁Frau")
    assert auto["corrupted_translation"]  # the corrupted source chose the target and contrast
    for curve in result["curves"].values():
        assert curve["faithfulness"][0] == 0.0 and curve["faithfulness"][-1] == pytest.approx(1.0, abs=1e-5)
    # without --mean-ablation a line with no corrupted column is refused, and --references needs it
    with pytest.raises(SystemExit, match=r"mean.tsv, line 1: .*no corrupted column: pass --mean-ablation"):
        circuit_atlas.main([shipped_copy, "--pairs", str(pairs), "--name", "refused"])
    with pytest.raises(SystemExit):
        circuit_atlas.parse_args([shipped_copy, "--pairs", str(pairs), "--references", "5"])
    assert "--references is for --mean-ablation" in capsys.readouterr().err
