"""What every analysis starts from: a source sentence and a target as the teacher-forced model sees them.

`make_example` turns text or ids (and a target: text, ids, or None for the model's own translation) into an
`Example` of three id lists; `token_logprobs` scores it. Tokens are shown with the tokenizer's own spelling.
Results of analyses are `Result`s (`to_dict` is JSON-ready); those on one example begin with the header of
`TranslationResult`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch


def device_of(model):
    return next(model.parameters()).device


def tokens_of(tokenizer, ids: Sequence[int]) -> list[str]:
    ids = [int(i) for i in ids]
    if tokenizer is None:
        return [str(i) for i in ids]
    return list(tokenizer.convert_ids_to_tokens(ids))


def source_ids(model, tokenizer, source) -> list[int]:
    if isinstance(source, str):
        if tokenizer is None:
            raise ValueError("a tokenizer is needed to encode a text; pass token ids instead.")
        max_len = getattr(tokenizer, "model_max_length", None)
        max_len = max_len if isinstance(max_len, int) and max_len < 100_000 else None
        ids = tokenizer(source, truncation=max_len is not None, max_length=max_len)["input_ids"]
    else:
        ids = [int(i) for i in (source.tolist() if torch.is_tensor(source) else source)]
    if not ids:
        raise ValueError("the source sentence is empty.")
    return ids


def strip_generated(model, ids: Sequence[int]) -> list[int]:
    """Generated ids -> target labels: drop the decoder start token, stop after the first </s>, no padding."""
    cfg = model.config
    ids = [int(i) for i in ids]
    if ids and ids[0] == cfg.decoder_start_token_id:
        ids = ids[1:]
    out = []
    for i in ids:
        if i == cfg.pad_token_id and i != cfg.eos_token_id:
            continue
        out.append(i)
        if i == cfg.eos_token_id:
            break
    return out


def labels_from_ids(model, ids) -> list[int]:
    """Target ids as given by a caller -> labels y_1 .. y_n </s>.

    Accepts the labels themselves or the decoder's reading `<start> y_1 .. y_n` (as the Space's translation
    keeps them): a leading decoder start token is dropped and a missing final </s> is added (also to a
    generated translation cut at max_length), so the score is always that of the complete translation.
    """
    ids = [int(i) for i in (ids.tolist() if torch.is_tensor(ids) else ids)]
    if ids and ids[0] == model.config.decoder_start_token_id:
        ids = ids[1:]
    return completed(model, ids)


def completed(model, labels: Sequence[int]) -> list[int]:
    """Labels with the final </s> (added to a translation that `generate` cut at its length limit)."""
    labels = list(labels)
    eos = model.config.eos_token_id
    if eos is not None and (not labels or labels[-1] != eos):
        labels.append(int(eos))
    return labels


@dataclass
class Example:
    """One source sentence and one target, as the teacher-forced model sees them (all lists of ids)."""

    input_ids: list[int]  # source, ending with </s>
    labels: list[int]  # target y_1 .. y_n, normally ending with </s>
    decoder_input_ids: list[int]  # <start> y_1 .. y_{n-1}: position t predicts labels[t]

    def tensors(self, device=None):
        return (
            torch.tensor([self.input_ids], device=device),
            torch.tensor([self.decoder_input_ids], device=device),
            torch.tensor([self.labels], device=device),
        )


@torch.inference_mode()
def generate_ids(model, input_ids: Sequence[int], **generate_kwargs) -> list[int]:
    """Translate source ids (with the model's generation config, or `generate_kwargs`): labels y_1 .. y_n </s>."""
    model.eval()
    ids = torch.tensor([list(input_ids)], device=device_of(model))
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **generate_kwargs)
    return strip_generated(model, out[0].tolist())


def make_example(model, tokenizer, source, target=None, **generate_kwargs) -> Example:
    """Source text or ids, and a target: text, ids, or None (the model's own translation, generated here).

    Target ids may be the labels y_1 .. y_n </s> or the decoder's reading <start> y_1 .. y_n: a leading
    start token is dropped and a missing </s> added.
    """
    input_ids = source_ids(model, tokenizer, source)
    if target is None:
        labels = completed(model, generate_ids(model, input_ids, **generate_kwargs))  # already without <start>
    elif isinstance(target, str):
        if tokenizer is None:
            raise ValueError("a tokenizer is needed to encode a text; pass token ids instead.")
        labels = tokenizer(text_target=target)["input_ids"]
    else:
        labels = labels_from_ids(model, target)
    if not labels:
        raise ValueError("the target is empty.")
    decoder_input_ids = [int(model.config.decoder_start_token_id)] + labels[:-1]
    return Example(input_ids, labels, decoder_input_ids)


def decode(tokenizer, ids: Sequence[int]) -> str:
    if tokenizer is None:
        return " ".join(str(i) for i in ids)
    return tokenizer.decode(list(ids), skip_special_tokens=True).strip()


def logprobs_of(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits, (B, T) labels -> (B, T) log p(label)."""
    return logits.float().log_softmax(-1).gather(-1, labels[..., None]).squeeze(-1)


@torch.inference_mode()
def token_logprobs(model, example: Example) -> list[float]:
    """Teacher-forced log p(y_t | y_<t, x) of every target token (natural log)."""
    model.eval()
    input_ids, decoder_input_ids, labels = example.tensors(device_of(model))
    logits = model(input_ids=input_ids, decoder_input_ids=decoder_input_ids, use_cache=False).logits
    return logprobs_of(logits, labels)[0].tolist()


def source_text(tokenizer, source, example: Example) -> str:
    """The source as text: the given string, or the decoded ids."""
    return source if isinstance(source, str) else decode(tokenizer, example.input_ids)


class Result:
    """An analysis' result, a dataclass of plain values: `to_dict` is JSON-ready."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TranslationResult(Result):
    """The header of a result on one example: the source, and the translation it scored."""

    source: str
    translation: str
    translation_ids: list[int]  # pass them back as `translation` to score exactly these tokens
    source_tokens: list[str]  # encoder positions

    @staticmethod
    def header(tokenizer, source, example: Example) -> dict:
        """The header's fields for `example`: `LogitLens(**TranslationResult.header(...), ...)`."""
        return {
            "source": source_text(tokenizer, source, example),
            "translation": decode(tokenizer, example.labels),
            "translation_ids": list(example.labels),
            "source_tokens": tokens_of(tokenizer, example.input_ids),
        }
