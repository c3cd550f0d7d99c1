"""OPUS-MT-shaped Marian models for the tests, built here with random weights (nothing is downloaded): a
SentencePiece tokenizer in OPUS-MT's file layout, and a small MarianMTModel in its layout beside it. Used by the
converter's tests and by the Space's tests on a converted model."""

import io
import json
import os
import shutil

import sentencepiece as spm
import torch

CARD = "---\nlanguage:\n- en\n- de\nlicense: cc-by-4.0\ntags:\n- translation\n---\n\n# opus-mt-en-de (test copy)\n"


def write_opus_tokenizer(folder, sentences, vocab_size: int):
    """OPUS-MT's tokenizer files in `folder`: source.spm and target.spm (one SentencePiece unigram model trained
    here on `sentences`), vocab.json with </s> = 0, <unk> = 1 and <pad> last, and tokenizer_config.json naming
    the languages."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        unk_id=0,
        eos_id=1,
        bos_id=-1,
        pad_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = {"</s>": 0, "<unk>": 1}
    for i in range(processor.get_piece_size()):
        vocab.setdefault(processor.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    (folder / "source.spm").write_bytes(model.getvalue())
    (folder / "target.spm").write_bytes(model.getvalue())
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"source_lang": "en", "target_lang": "de", "model_max_length": 512})
    )
    return folder


def make_marian(folder, tokenizer_dir, activation="swish", seed=0, card=True, **config):
    """A random-weight MarianMTModel in OPUS-MT's layout (small), saved with the tokenizer files and a card."""
    from transformers import GenerationConfig, MarianConfig, MarianMTModel

    vocab = len(json.loads((tokenizer_dir / "vocab.json").read_text()))
    pad = vocab - 1
    values = dict(
        vocab_size=vocab,
        decoder_vocab_size=vocab,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        activation_function=activation,
        max_position_embeddings=64,
        scale_embedding=True,
        pad_token_id=pad,
        decoder_start_token_id=pad,
        eos_token_id=0,
        bos_token_id=0,
        forced_eos_token_id=0,
        share_encoder_decoder_embeddings=True,
        architectures=["MarianMTModel"],
    )
    values.update(config)
    torch.manual_seed(seed)
    model = MarianMTModel(MarianConfig(**values))
    with torch.no_grad():  # far larger than Marian's init: sharp attention, varied outputs (not one token repeated)
        for name, parameter in model.named_parameters():
            if parameter.dim() > 1 and "embed_positions" not in name:
                parameter.normal_(0.0, 1.0)
        model.final_logits_bias.normal_(0.0, 0.5)
    assert model.final_logits_bias.abs().min() > 0
    model.generation_config = GenerationConfig(  # OPUS-MT's generation_config.json, scaled down
        bad_words_ids=[[pad]],
        bos_token_id=0,
        decoder_start_token_id=pad,
        eos_token_id=0,
        forced_eos_token_id=0,
        max_length=24,
        num_beams=4,
        pad_token_id=pad,
    )
    model.save_pretrained(folder)
    for name in os.listdir(tokenizer_dir):
        shutil.copyfile(tokenizer_dir / name, folder / name)
    if card:
        (folder / "README.md").write_text(CARD)
    return folder
