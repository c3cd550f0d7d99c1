"""A joint source+target subword vocabulary trained with `tokenizers`, wrapped as `PreTrainedTokenizerFast`.

SentencePiece-style: spaces become the visible marker "▁" (so the Space can show word starts), BPE or
Unigram merges on top, and byte fallback so any character (emoji, rare scripts) round-trips exactly
instead of turning into <unk>.
"""

from __future__ import annotations

import json

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]  # ids 0, 1, 2, 3: the defaults of TransformerConfig
BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]


def train_tokenizer(
    texts, vocab_size: int = 8000, model_type: str = "bpe", model_max_length: int = 256
) -> PreTrainedTokenizerFast:
    """Train a joint vocabulary on an iterable of sentences (both languages)."""
    if model_type not in ("bpe", "unigram"):
        raise ValueError(f"tokenizer type must be 'bpe' or 'unigram', got {model_type!r}.")
    minimum = len(SPECIAL_TOKENS) + len(BYTE_TOKENS) + 100
    if vocab_size < minimum:
        raise ValueError(f"vocab_size {vocab_size} is too small: at least {minimum} (special + 256 byte tokens + 100).")
    if model_type == "bpe":
        tok = Tokenizer(models.BPE(unk_token=UNK, byte_fallback=True))
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS + BYTE_TOKENS, min_frequency=2, show_progress=False
        )
    else:
        tok = Tokenizer(models.Unigram(byte_fallback=True))
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS + BYTE_TOKENS, unk_token=UNK, show_progress=False
        )
    # Llama-style: every space becomes "▁" and one "▁" is prepended, in the normaliser, so that leading spaces
    # survive (a Metaspace pre-tokenizer with prepend_scheme="always" does not prepend to a text that already
    # starts with a space, and the decoder below then loses that space); the pre-tokenizer only splits words.
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    # Llama-style decoding: "▁" back to spaces, <0xNN> bytes back to characters, drop the one leading space.
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # The trainer reserves the 256 byte tokens as "special"; make them ordinary vocabulary entries again so
    # decoding with skip_special_tokens=True keeps the characters they spell.
    state = json.loads(tok.to_str())
    state["added_tokens"] = [t for t in state["added_tokens"] if t["content"] in SPECIAL_TOKENS]
    # The Unigram trainer returns a model without byte fallback (unseen characters became <unk>); turn it on.
    state["model"]["byte_fallback"] = True
    tok = Tokenizer.from_str(json.dumps(state))
    eos_id = tok.token_to_id(EOS)
    # Every sequence ends with </s>: the encoder sees where the sentence stops and the decoder learns to stop.
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, eos_id)]
    )
    return wrap(tok, model_max_length)


def wrap(tok: Tokenizer, model_max_length: int = 256) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
