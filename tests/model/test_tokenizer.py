"""The joint subword tokenizer (`training/tokenizer.py`): exact round trips on real Multi30k lines in all
four languages, the special-token ids the model config relies on, </s> at the end of every encoding, and a
save / `AutoTokenizer` reload that gives the same ids."""

import os
import unicodedata

import pytest

from training.data import LANGUAGES, read_lines
from training.tokenizer import BYTE_TOKENS, SPECIAL_TOKENS, train_tokenizer

# Characters that must survive a round trip in each language (the test checks the sample really has them).
NON_ASCII = {"en": None, "de": "äöüßÄÖÜ", "fr": "éèàçêô", "cs": "áčďéěíňóřšťúůýž"}

EXTRA = [
    "Zwei  Männer  mit  doppelten   Leerzeichen.",  # double and triple spaces
    "  Führende und folgende Leerzeichen.  ",
    "ÄRGER über Öl, Übermut und Straße!",  # capitals with umlauts, ß
    "Un garçon à l'école « français » ; d'accord ?",
    "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "A dog 🐕 runs after a 🏐 — fast!",  # emoji and an em dash: byte fallback, not <unk>
    "Ω≈ç√∫ 中文 ελληνικά",  # scripts absent from the training data
    '(1) "Quotes", [brackets], {braces}; 50% & $3.99 @home #tag',
    "MiXeD CaSe and CAPS and lower.",
    "",
]


def real_lines(data_dir, lang, n=300):
    """The first n validation lines (not the training lines the tokenizer learnt from)."""
    return read_lines(os.path.join(data_dir, f"val.{lang}.gz"))[:n]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_round_trip_real_multi30k_lines(multi30k_tokenizer, data_dir, lang):
    tok = multi30k_tokenizer
    lines = real_lines(data_dir, lang)
    assert len(lines) == 300
    if NON_ASCII[lang]:
        assert any(c in line for line in lines for c in NON_ASCII[lang]), "the sample should have accents"
    assert any(any(c.isupper() for c in line) for line in lines)
    assert any(any(c in ".,;!?'\"-" for c in line) for line in lines)
    ids = tok(lines)["input_ids"]
    for line, seq in zip(lines, ids):
        assert tok.unk_token_id not in seq, line
        assert tok.decode(seq, skip_special_tokens=True) == line
        assert seq[-1] == tok.eos_token_id and seq.count(tok.eos_token_id) == 1
    # The batched decoder used by evaluation gives the same strings.
    assert tok.batch_decode(ids, skip_special_tokens=True) == lines


@pytest.mark.parametrize("text", EXTRA)
def test_round_trip_spaces_casing_punctuation_emoji(multi30k_tokenizer, text):
    tok = multi30k_tokenizer
    ids = tok(text)["input_ids"]
    assert ids[-1] == tok.eos_token_id
    assert tok.unk_token_id not in ids  # byte fallback instead of <unk>
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_emoji_uses_byte_fallback(multi30k_tokenizer):
    tok = multi30k_tokenizer
    tokens = tok.convert_ids_to_tokens(tok("🐕")["input_ids"])
    assert [t for t in tokens if t.startswith("<0x")] == ["<0xF0>", "<0x9F>", "<0x90>", "<0x95>"], tokens


def test_text_is_nfc_normalised(multi30k_tokenizer):
    """Decomposed accents (NFD) come back composed (NFC), the form Multi30k uses."""
    tok = multi30k_tokenizer
    nfd = unicodedata.normalize("NFD", "Müller isst Crème brûlée.")
    assert nfd != unicodedata.normalize("NFC", nfd)
    assert tok.decode(tok(nfd)["input_ids"], skip_special_tokens=True) == unicodedata.normalize("NFC", nfd)


def test_special_token_ids(multi30k_tokenizer):
    tok = multi30k_tokenizer
    assert SPECIAL_TOKENS == ["<pad>", "<s>", "</s>", "<unk>"]
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.convert_ids_to_tokens([0, 1, 2, 3]) == SPECIAL_TOKENS
    assert len(tok) == 1000
    # The 256 byte tokens are ordinary vocabulary (kept by skip_special_tokens), right after the specials.
    assert tok.convert_tokens_to_ids(BYTE_TOKENS) == list(range(4, 260))
    assert set(tok.all_special_ids) == {0, 1, 2, 3}


def test_every_encoding_ends_with_eos(multi30k_tokenizer, data_dir):
    tok = multi30k_tokenizer
    lines = real_lines(data_dir, "en", 50)
    enc = tok(lines, text_target=real_lines(data_dir, "de", 50))
    for seq in enc["input_ids"] + enc["labels"]:
        assert seq[-1] == tok.eos_token_id and tok.bos_token_id not in seq and tok.pad_token_id not in seq
    # Truncation keeps the final </s>.
    long = " ".join(lines[:5])
    seq = tok(long, truncation=True, max_length=12)["input_ids"]
    assert len(seq) == 12 and seq[-1] == tok.eos_token_id
    # Padding a batch uses id 0 on the right.
    batch = tok(["A dog.", "Two men are playing football in a park."], padding=True)
    assert batch["input_ids"][0][-1] == 0 and batch["attention_mask"][0][-1] == 0
    assert batch["input_ids"][1][-1] == tok.eos_token_id


def test_save_and_reload_with_autotokenizer(multi30k_tokenizer, data_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = multi30k_tokenizer
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file() and (tmp_path / "tokenizer_config.json").is_file()
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    texts = [line for lang in LANGUAGES for line in real_lines(data_dir, lang, 40)] + EXTRA
    assert loaded(texts)["input_ids"] == tok(texts)["input_ids"]
    assert (loaded.pad_token_id, loaded.bos_token_id, loaded.eos_token_id, loaded.unk_token_id) == (0, 1, 2, 3)
    assert loaded.model_max_length == tok.model_max_length == 64
    for text in texts:
        assert loaded.decode(loaded(text)["input_ids"], skip_special_tokens=True) == text


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_train_tokenizer_both_types_round_trip(data_dir, model_type):
    lines = real_lines(data_dir, "en", 400) + real_lines(data_dir, "de", 400)
    tok = train_tokenizer(lines, vocab_size=500, model_type=model_type, model_max_length=32)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert 360 <= len(tok) <= 500
    for text in lines[::20] + EXTRA:
        ids = tok(text)["input_ids"]
        assert ids[-1] == tok.eos_token_id
        assert tok.decode(ids, skip_special_tokens=True) == text


def test_train_tokenizer_refuses_bad_settings():
    with pytest.raises(ValueError, match="too small"):
        train_tokenizer(["a b c"], vocab_size=100)
    with pytest.raises(ValueError, match="bpe.*unigram"):
        train_tokenizer(["a b c"], vocab_size=1000, model_type="wordpiece")
