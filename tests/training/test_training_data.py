"""Parallel-text loading (`training/data.py`): the Multi30k layout, and a clear error naming the file and the
line for every kind of bad data (different line counts, missing split, empty file, non-UTF-8, bad gzip).
Empty lines are skipped and counted."""

import gzip
import os

import pytest

from training.data import DataError, ParallelCorpus, load_corpus, read_lines


def write(folder, name, content, gz=None):
    """Write str (UTF-8) or bytes to folder/name; gzip it when the name ends with .gz."""
    os.makedirs(folder, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    path = os.path.join(folder, name)
    if gz or name.endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        with open(path, "wb") as fh:
            fh.write(data)
    return path


def test_reads_real_multi30k_splits(data_dir):
    train = load_corpus(data_dir, "train", "en", "de")
    assert isinstance(train, ParallelCorpus)
    assert len(train) == len(train.target) == 29000 and train.skipped_empty == 0
    assert train.source[0].startswith("Two young, White males are outside near many bushes")
    assert train.target[0].startswith("Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche")
    for lang in ("fr", "cs"):
        assert len(load_corpus(data_dir, "val", "en", lang)) == 1014
    assert len(load_corpus(data_dir, "test_2016_flickr", "de", "en")) == 1000


def test_plain_and_gzip_files_mixed_and_crlf(tmp_path):
    write(tmp_path, "train.en", "A dog runs.\r\nTwo men.\r\n")
    write(tmp_path, "train.de.gz", "Ein Hund rennt.\nZwei Männer.")  # no final newline
    corpus = load_corpus(str(tmp_path), "train", "en", "de")
    assert corpus.source == ["A dog runs.", "Two men."]
    assert corpus.target == ["Ein Hund rennt.", "Zwei Männer."]


def test_empty_lines_are_skipped_and_counted(tmp_path, caplog):
    write(tmp_path, "train.en", "one\n\nthree\nfour\n   \nsix\n")
    write(tmp_path, "train.de", "eins\nzwei\n\nvier\nfünf\nsechs\n")
    with caplog.at_level("WARNING"):
        corpus = load_corpus(str(tmp_path), "train", "en", "de")
    assert corpus.source == ["one", "four", "six"]
    assert corpus.target == ["eins", "vier", "sechs"]  # still aligned after the skips
    assert corpus.skipped_empty == 3
    assert "skipped 3 pairs with an empty side" in caplog.text


def test_different_line_counts_name_both_files_and_the_line(tmp_path):
    src = write(tmp_path, "train.en", "a\nb\nc\nd\n")
    tgt = write(tmp_path, "train.de.gz", "a\nb\nc\n")
    with pytest.raises(DataError) as err:
        load_corpus(str(tmp_path), "train", "en", "de")
    msg = str(err.value)
    assert src in msg and tgt in msg
    assert "4 lines" in msg and "has 3" in msg and "after line 3" in msg


def test_missing_split_names_what_was_looked_for(tmp_path):
    write(tmp_path, "train.en", "a\n")
    write(tmp_path, "train.de", "b\n")
    with pytest.raises(DataError) as err:
        load_corpus(str(tmp_path), "val", "en", "de")
    msg = str(err.value)
    assert "'val'" in msg and "val.en" in msg and "val.en.gz" in msg and str(tmp_path) in msg
    assert "train.de, train.en" in msg  # what is there instead


def test_missing_language_of_a_split(tmp_path):
    write(tmp_path, "train.en", "a\n")
    write(tmp_path, "train.de", "b\n")
    with pytest.raises(DataError, match=r"language 'fr'.*train\.fr"):
        load_corpus(str(tmp_path), "train", "en", "fr")


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_corpus(str(tmp_path / "nowhere" / "multi30k"), "train", "en", "de")


def test_missing_default_folder_names_both_ways_to_give_data(tmp_path, monkeypatch):
    """A fresh clone without ../shared: the message says where it looked and names both kinds of --data."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        load_corpus("../shared/data/multi30k", "train", "en", "de")
    assert str(err.value) == (
        f"Data folder '../shared/data/multi30k' does not exist ({tmp_path.parent / 'shared' / 'data' / 'multi30k'}). "
        "Pass --data with either a local folder of the Multi30k layout ({split}.{lang}[.gz] files, one sentence per "
        "line: train.en.gz, train.de.gz, ...) or a Hub dataset id such as bentrevett/multi30k (whose splits are "
        "train, validation and test)."
    )


@pytest.mark.parametrize("name,content", [("train.de", b""), ("train.de.gz", b"")])
def test_empty_file(tmp_path, name, content):
    write(tmp_path, "train.en", "a\nb\n")
    path = write(tmp_path, name, content)
    with pytest.raises(DataError) as err:
        load_corpus(str(tmp_path), "train", "en", "de")
    assert f"{path} is empty" in str(err.value)


def test_file_of_only_empty_lines(tmp_path):
    write(tmp_path, "train.en", "\n\n")
    write(tmp_path, "train.de", "x\ny\n")
    with pytest.raises(DataError, match="no non-empty sentence pairs"):
        load_corpus(str(tmp_path), "train", "en", "de")


@pytest.mark.parametrize("gz", [False, True])
def test_non_utf8_names_file_and_line(tmp_path, gz):
    write(tmp_path, "train.en", "A man.\nA woman.\nA child.\n")
    name = "train.de.gz" if gz else "train.de"
    path = write(tmp_path, name, "Ein Mann.\nEine Frau.\n".encode() + "Ein Kind in München.\n".encode("latin-1"))
    with pytest.raises(DataError) as err:
        load_corpus(str(tmp_path), "train", "en", "de")
    msg = str(err.value)
    assert msg.startswith(f"{path}, line 3: not valid UTF-8"), msg


def test_corrupt_gzip(tmp_path):
    write(tmp_path, "train.en", "a\n")
    path = os.path.join(tmp_path, "train.de.gz")
    with open(path, "wb") as fh:
        fh.write(b"this is not gzip data\n")
    with pytest.raises(DataError, match=f"Cannot read {path}"):
        load_corpus(str(tmp_path), "train", "en", "de")


def test_same_source_and_target_language(tmp_path):
    with pytest.raises(DataError, match="both 'en'"):
        load_corpus(str(tmp_path), "train", "en", "en")


def test_read_lines_keeps_inner_empty_lines(tmp_path):
    path = write(tmp_path, "x.en", "a\n\nb\n")
    assert read_lines(path) == ["a", "", "b"]


def test_a_plain_file_beside_its_gzip_says_which_is_read(tmp_path, caplog):
    write(tmp_path, "train.en", "A plain sentence.\n")
    (tmp_path / "train.en.gz").write_bytes(b"not gzip at all")  # broken: it must not be the one read
    write(tmp_path, "train.de", "Ein Satz.\n")
    with caplog.at_level("WARNING", logger="training.data"):
        corpus = load_corpus(str(tmp_path), "train", "en", "de")
    assert corpus.source == ["A plain sentence."]
    assert f"{tmp_path}: reading train.en; train.en.gz beside it is not read (remove one of the two)" in caplog.text


def test_an_unreachable_hub_dataset_says_what_to_do(monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # read at import: set where it is read
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        DataError,
        match=r"Cannot load the Hub dataset 'nobody-here/no-such-dataset', split 'train' "
        r"\(.*\)\. It needs a network \(or the Hub cache\); without one pass --data "
        r"with a local folder of the Multi30k layout",
    ):
        load_corpus("nobody-here/no-such-dataset", "train", "en", "de")
