"""Loading the model the way a Hub user would, cleaning input, translating, and collecting attention.

Imports no gradio, and torch/transformers only when a model is loaded, so a wrong `--model` is reported
at once. `ModelBundle` is the one object the UI (and any later tab) needs: model, tokenizer, limits.
"""

from __future__ import annotations

import copy
import json
import os
import re
import threading
import time
import unicodedata
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from batching import CTranslate2Batcher, GenerateBatcher
from encdec_lens.attention import AttentionData, build_attention_data, decoder_ids_from_generated
from model_metadata import (
    CTRANSLATE2_FOLDER,
    CTRANSLATE2_RECORD,
    display_name,
    is_hub_id,
    language_name,
    model_languages,
    model_trained_on,
    weights_sha256,
)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL_DIR = os.path.join(HERE, "model")
MAX_INPUT_CHARS = 2000  # longer text is cut before tokenising; the token limit below is the real one
BOX_MAX_CHARS = 8000  # the text boxes keep at most this many characters (a longer paste is cut in the browser)
MAX_BATCH_SENTENCES = 16  # concurrent translations served by one `generate()` call at most (see batching.py)
ATTENTION_CACHE_SIZE = 32  # recent translations whose attention maps stay in memory (bounded: nothing grows)
_TRAIN_HINT = (
    "Train and export one with `python -m training.train --config training/configs/multi30k_en_de_tiny.json` "
    "(the shipped model's recipe; it writes space/model/), or pass --model PATH_OR_HUB_ID, or set MODEL_ID."
)


ENGINES = ("auto", "torch", "ctranslate2")  # auto: CTranslate2 where the copy is there and the package installed


class ModelSourceError(Exception):
    """The model could not be found or loaded; the message says what was looked for."""


@dataclass(frozen=True)
class ModelSource:
    ref: str  # a local folder (absolute) or a Hub repository id
    origin: str  # "--model", "MODEL_ID" or "default (space/model/)"
    is_local: bool


def resolve_model_source(
    cli_value: str | None = None, env: dict | None = None, default_dir: str = DEFAULT_MODEL_DIR
) -> ModelSource:
    """`--model`, else `$MODEL_ID`, else `space/model/`; checks a local folder without importing torch."""
    env = os.environ if env is None else env
    if cli_value:
        ref, origin = cli_value, "--model"
    elif env.get("MODEL_ID"):
        ref, origin = env["MODEL_ID"], "MODEL_ID"
    else:
        ref, origin = default_dir, "default (space/model/)"
    path = os.path.abspath(os.path.expanduser(ref))
    if os.path.isdir(path):
        config = os.path.join(path, "config.json")
        if not os.path.isfile(config):
            raise ModelSourceError(
                f"{path} (from {origin}) is a folder but holds no config.json; looked for {config}. Expected a "
                "model folder written by save_pretrained (config.json, model.safetensors, tokenizer files and "
                "the remote-code .py files). " + _TRAIN_HINT
            )
        return ModelSource(path, origin, True)
    if os.path.exists(path):
        raise ModelSourceError(f"{path} (from {origin}) is a file; pass the model folder that contains config.json.")
    if is_hub_id(ref):
        return ModelSource(ref, origin, False)
    raise ModelSourceError(
        f"No model folder at {path} (from {origin}); looked for {os.path.join(path, 'config.json')}. "
        + ("Hub models are named owner/name. " if origin != "default (space/model/)" else "")
        + _TRAIN_HINT
    )


# --- out-of-domain input ------------------------------------------------------------------------------------
# The shipped model learnt from Multi30k: short English descriptions of photos. Text far from that (another
# language, another script, emoji) still gets a fluent-looking translation, so the Space says when the input
# looks out of domain. The test is deliberately simple and needs nothing beyond the tokenizer; the first of
# these that holds gives the note:
#   1. the text has no letters at all (only emoji, symbols or digits);
#   2. more than half of its letters are not in the Latin alphabet (Arabic, Cyrillic, CJK, ...), for a model
#      whose source language is written in it;
#   3. more than 30% of its characters are unknown to the vocabulary: the tokenizer spells them byte by byte
#      (`<0xNN>` pieces) or as `<unk>`;
#   4. it has at least two function words ("der", "und", "est", "sobre", "jsou", ...) of another language and
#      more of them than of the source language: then it is probably that language.
# A single emoji or foreign name in an English sentence passes; very short text (one or two words) rarely
# triggers rule 4. It is a hint shown next to the translation, never a refusal.
OUT_OF_DOMAIN_BYTE_SHARE = 0.3
OUT_OF_DOMAIN_SCRIPT_SHARE = 0.5
OUT_OF_DOMAIN_MIN_WORDS = 2
LATIN_SCRIPT_LANGS = {"en", "de", "fr", "es", "cs"}
# Frequent short words of each language, without the ones another of these languages writes the same way
# as English (in, an, was, man, am, hat, so, also, ...).
FUNCTION_WORDS = {
    "en": {
        "the",
        "a",
        "is",
        "are",
        "of",
        "on",
        "with",
        "and",
        "his",
        "her",
        "their",
        "at",
        "to",
        "for",
        "by",
        "from",
        "who",
        "while",
        "its",
        "it",
        "this",
        "that",
        "there",
        "some",
        "into",
        "near",
        "he",
        "she",
        "they",
        "has",
        "have",
        "two",
        "three",
        "people",
        "woman",
        "men",
        "next",
        "front",
        "down",
        "up",
    },
    "de": {
        "der",
        "die",
        "das",
        "und",
        "ist",
        "sind",
        "ein",
        "eine",
        "einem",
        "einen",
        "einer",
        "eines",
        "mit",
        "auf",
        "im",
        "dem",
        "den",
        "des",
        "sich",
        "von",
        "zu",
        "zum",
        "zur",
        "nicht",
        "zwei",
        "drei",
        "bei",
        "aus",
        "vor",
        "für",
        "über",
        "unter",
        "ihr",
        "ihre",
        "sein",
        "seine",
        "auch",
        "oder",
        "wird",
        "neben",
    },
    "fr": {
        "le",
        "la",
        "les",
        "et",
        "est",
        "sont",
        "un",
        "une",
        "des",
        "du",
        "dans",
        "sur",
        "avec",
        "au",
        "aux",
        "deux",
        "trois",
        "qui",
        "pour",
        "par",
        "homme",
        "femme",
        "devant",
        "ses",
        "son",
        "sa",
    },
    "es": {
        "el",
        "los",
        "las",
        "y",
        "es",
        "está",
        "están",
        "un",
        "una",
        "con",
        "del",
        "por",
        "en",
        "dos",
        "tres",
        "sobre",
        "hombre",
        "mujer",
        "que",
        "su",
        "sus",
        "para",
    },
    "cs": {
        "je",
        "jsou",
        "na",
        "v",
        "ve",
        "se",
        "s",
        "z",
        "ze",
        "dva",
        "dvě",
        "tři",
        "muž",
        "žena",
        "který",
        "která",
        "před",
        "při",
        "pro",
        "muži",
        "ženy",
    },
}
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def _script(ch: str) -> str:
    """The script of a letter, from its Unicode name: "LATIN", "ARABIC", "CYRILLIC", "CJK", ..."""
    return unicodedata.name(ch, "UNKNOWN").split(" ")[0]


def _byte_spelled_share(text: str, tokenizer) -> float | None:
    """The share of non-space characters the tokenizer spells byte by byte or as <unk>; None if unknown."""
    try:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    except (NotImplementedError, TypeError, ValueError):  # a slow tokenizer has no offsets
        return None
    if "offset_mapping" not in encoded:  # ... or returns none (SentencePiece's MarianTokenizer)
        return None
    unk = getattr(tokenizer, "unk_token", None)
    spelled = set()
    for token, (start, end) in zip(tokenizer.convert_ids_to_tokens(encoded["input_ids"]), encoded["offset_mapping"]):
        if token == unk or (token.startswith("<0x") and token.endswith(">") and len(token) == 6):
            spelled.update(range(start, end))
    positions = [i for i, ch in enumerate(text) if not ch.isspace()]
    return sum(i in spelled for i in positions) / len(positions) if positions else 0.0


def out_of_domain_reason(text: str, tokenizer, source_lang: str = "en") -> str | None:
    """Why `text` looks unlike the model's training data (see the rules above), or None when it looks fine."""
    text = str(text)
    letters = [ch for ch in text if ch.isalpha()]
    if text.strip() and not letters:
        return "it has no letters, only symbols, digits or emoji"
    if not letters:
        return None
    if source_lang in LATIN_SCRIPT_LANGS:
        other = Counter(_script(ch) for ch in letters if _script(ch) != "LATIN")
        if sum(other.values()) > OUT_OF_DOMAIN_SCRIPT_SHARE * len(letters):
            script = other.most_common(1)[0][0]
            shown = script if script == "CJK" else script.title()
            return f"most of its letters are in {shown} script, not the Latin alphabet"
    share = _byte_spelled_share(text, tokenizer)
    if share is not None and share > OUT_OF_DOMAIN_BYTE_SHARE:
        return (
            f"{share:.0%} of its characters never occurred in the training text (the tokenizer spells them "
            "byte by byte)"
        )
    own = FUNCTION_WORDS.get(source_lang)
    if own is not None:
        words = [w.lower() for w in _WORD.findall(text)]
        counts = {
            lang: [w for w in words if w in vocab] for lang, vocab in FUNCTION_WORDS.items() if lang != source_lang
        }
        lang, hits = max(counts.items(), key=lambda item: len(item[1]))
        if len(hits) >= OUT_OF_DOMAIN_MIN_WORDS and len(hits) > sum(w in own for w in words):
            examples = ", ".join(f"“{w}”" for w in dict.fromkeys(hits))
            return f"it looks like {language_name(lang)}, not {language_name(source_lang)} (words such as {examples})"
    return None


def out_of_domain_note(reason: str, source_lang: str = "en") -> str:
    """The notice shown for an out-of-domain reason."""
    return (
        f"This input looks out of domain: {reason}. The model learnt from "
        f"{language_name(source_lang)} image captions (Multi30k) only, so expect a confident "
        "but wrong translation."
    )


@dataclass
class PreparedSource:
    text: str  # what the model reads (after cleaning and any cut)
    input_ids: list[int]
    notices: list[str] = field(default_factory=list)
    original_tokens: int = 0


@dataclass
class Translation:
    text: str
    source: PreparedSource | None
    decoder_ids: list[int] = field(default_factory=list)
    attention: AttentionData | None = None
    notices: list[str] = field(default_factory=list)
    num_beams: int = 0
    max_new_tokens: int = 0
    generate_ms: float = 0.0
    attention_ms: float = 0.0

    @property
    def empty(self) -> bool:
        return self.source is None


EMPTY_MESSAGE = "Type a sentence to translate (the box is empty)."


def replace_surrogates(text: str) -> tuple[str, int]:
    """`text` with every lone surrogate (possible through the API; not encodable as UTF-8) made "?", and how many."""
    count = sum("\ud800" <= ch <= "\udfff" for ch in text)
    return (text.encode("utf-8", "replace").decode("utf-8") if count else text), count


class ModelBundle:
    """The loaded model and tokenizer plus what the UI needs to know about them."""

    def __init__(self, model, tokenizer, ref: str = "", source_lang: str | None = None, target_lang: str | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.ref = ref
        config = model.config
        langs = model_languages(config, ref)  # config.json, else a local folder's model card, else en -> de
        self.source_lang = source_lang or langs[0]
        self.target_lang = target_lang or langs[1]
        # The out-of-domain hint is about Multi30k's image captions: only for models that learnt from them.
        self.trained_on = model_trained_on(config, ref)
        limits = (
            [int(config.max_position_embeddings)] if getattr(config, "position_embedding_type", "") == "learned" else []
        )
        tok_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < 100_000:
            limits.append(tok_max)
        self.max_source_tokens = min(limits) if limits else 256
        # The decoder reads <start> + generated tokens; learned positions cap that length.
        self.max_new_tokens_limit = (
            int(config.max_position_embeddings) - 1
            if getattr(config, "position_embedding_type", "") == "learned"
            else 256
        )
        gen = model.generation_config
        self.default_num_beams = int(getattr(gen, "num_beams", 1) or 1)
        self._attention_cache: OrderedDict = OrderedDict()
        self._cache_lock = threading.Lock()
        # The model's own length setting if its generation config states one, else 128 new tokens.
        stated = gen.to_diff_dict() if hasattr(gen, "to_diff_dict") else {}
        if stated.get("max_new_tokens"):
            default_new = int(stated["max_new_tokens"])
        elif stated.get("max_length"):
            default_new = int(stated["max_length"]) - 1
        else:
            default_new = 128
        self.default_max_new_tokens = max(4, min(default_new, self.max_new_tokens_limit))
        pad_id = next(
            (i for i in (config.pad_token_id, tokenizer.pad_token_id, config.eos_token_id) if i is not None), 0
        )
        self.batcher = GenerateBatcher(
            model, self.generation_config_for, int(pad_id), max_sentences=MAX_BATCH_SENTENCES
        )
        self.engine_note = ""  # why the translations are not served by CTranslate2 although asked for (auto)

    def use_ctranslate2(self, folder: str, threads: int | None = None) -> None:
        """Serve the translations with the CTranslate2 model in `folder` (this model, converted): `threads` CPU
        threads per batch (default: torch's)."""
        import ctranslate2
        import torch

        translator = ctranslate2.Translator(
            folder, device="cpu", inter_threads=1, intra_threads=threads or torch.get_num_threads()
        )
        start = self.model.generation_config.decoder_start_token_id
        start = self.model.config.decoder_start_token_id if start is None else start
        self.batcher = CTranslate2Batcher(
            translator, self.tokenizer, self.generation_config_for, int(start), max_sentences=MAX_BATCH_SENTENCES
        )

    @property
    def engine(self) -> str:
        """What decodes the translations: "PyTorch generate()" or "CTranslate2"."""
        return self.batcher.engine

    # --- description -----------------------------------------------------------------------------
    @property
    def language_pair(self) -> str:
        return f"{language_name(self.source_lang)} → {language_name(self.target_lang)}"

    @property
    def display_name(self) -> str:
        """What the page calls the model: the name in its model card, else the Hub id, else the folder's name."""
        return display_name(self.ref) or type(self.model).__name__

    @property
    def origin(self) -> str:
        """One sentence on where the weights come from, for the page's subtitle."""
        if self.trained_on == "OPUS":
            return "An OPUS-MT (Marian) model converted exactly into the original 2017 Transformer."
        return "The original 2017 Transformer, trained from scratch on Multi30k."

    def describe(self) -> str:
        c = self.model.config
        return (
            f"{self.language_pair} · N = {c.encoder_layers} encoder + {c.decoder_layers} decoder layers · "
            f"h = {c.encoder_attention_heads} heads · d_model = {c.d_model} · vocabulary {c.vocab_size:,} · "
            f"reads up to {self.max_source_tokens} source tokens"
        )

    # --- input -----------------------------------------------------------------------------------
    def prepare(self, text) -> PreparedSource | None:
        """Clean the text and tokenise it within the model's limit; None when there is nothing to translate."""
        if text is None:
            return None
        text, surrogates = replace_surrogates(str(text))
        sent_length = len(text)  # a box that cut a longer paste sends exactly BOX_MAX_CHARS characters
        text = text.strip()
        if not text:
            return None
        notices = []
        if surrogates:
            notices.append(
                f"The text held {surrogates} lone surrogate code point{'s' if surrogates > 1 else ''} "
                "(not valid Unicode, only possible through the API); each was read as “?”."
            )
        if len(text) > MAX_INPUT_CHARS:
            boxed = f" (the text box keeps at most {BOX_MAX_CHARS:,})" if sent_length >= BOX_MAX_CHARS else ""
            notices.append(
                f"The text has {len(text):,} characters{boxed}; only the first {MAX_INPUT_CHARS:,} "
                f"were read: the last {len(text) - MAX_INPUT_CHARS:,} were cut."
            )
            text = text[:MAX_INPUT_CHARS]
        reason = out_of_domain_reason(text, self.tokenizer, self.source_lang) if self.trained_on == "Multi30k" else None
        if reason:
            notices.append(out_of_domain_note(reason, self.source_lang))
        full = self.tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"]  # no "longer than" warning
        ids = full
        if len(full) > self.max_source_tokens:
            ids = self.tokenizer(text, truncation=True, max_length=self.max_source_tokens)["input_ids"]
            kept_text = self.tokenizer.decode(ids, skip_special_tokens=True)
            tail = kept_text[-40:]
            notices.append(
                f"Truncated: the text is {len(full)} subword tokens long and this model reads at most "
                f"{self.max_source_tokens}, so only the part up to “…{tail}” was translated (the first "
                f"{self.max_source_tokens} tokens, {len(full) - len(ids)} left out). Split a long text into sentences "
                "and translate them one at a time."
            )
            text = kept_text
        return PreparedSource(text=text, input_ids=list(ids), notices=notices, original_tokens=len(full))

    def target_ids(self, translation) -> list[int]:
        """A translation given as text (the API's `translation` argument) as the labels y_1 .. y_n </s>.

        Raises ValueError, with a message for the caller, for text that is not valid Unicode (a lone surrogate)
        or longer than the model can write (`max_new_tokens_limit` subword tokens): the cost of every forward
        pass over it grows with the square of its length.
        """
        text = str(translation)
        bad = next((ch for ch in text if "\ud800" <= ch <= "\udfff"), None)
        if bad is not None:
            raise ValueError(
                f"The translation contains a lone surrogate (\\u{ord(bad):04x}), which is not valid "
                "Unicode text: send it as UTF-8."
            )
        ids = self.tokenizer(text_target=text.strip(), verbose=False)["input_ids"]
        if len(ids) > self.max_new_tokens_limit:
            raise ValueError(
                f"The translation is {len(ids)} subword tokens long; this model writes at most "
                f"{self.max_new_tokens_limit}."
            )
        return list(ids)

    # --- attention maps --------------------------------------------------------------------------
    def _remember(self, key, data: AttentionData) -> None:
        with self._cache_lock:
            self._attention_cache[key] = data
            self._attention_cache.move_to_end(key)
            while len(self._attention_cache) > ATTENTION_CACHE_SIZE:
                self._attention_cache.popitem(last=False)

    def attention_data(self, source_ids: list[int], decoder_ids: list[int]) -> AttentionData:
        """The attention maps of one sentence pair: from the small cache of recent translations, else computed.

        The UI keeps only the ids in its per-session state (a few hundred bytes) and asks here when drawing.
        """
        key = (tuple(source_ids), tuple(decoder_ids))
        with self._cache_lock:
            data = self._attention_cache.get(key)
            if data is not None:
                self._attention_cache.move_to_end(key)
                return data
        data = build_attention_data(self.model, self.tokenizer, list(source_ids), list(decoder_ids))
        self._remember(key, data)
        return data

    def attention_for(self, state: dict | None) -> AttentionData | None:
        """`state` as the UI stores it, {"source_ids": [...], "decoder_ids": [...]}, or None."""
        if not state:
            return None
        return self.attention_data(state["source_ids"], state["decoder_ids"])

    # --- translation -----------------------------------------------------------------------------
    def generation_config_for(self, num_beams: int, max_new_tokens: int):
        """The `GenerationConfig` of one request: the model's own settings (length penalty, ...) with this beam size
        and this many new tokens at most; greedy search (`num_beams=1`) drops the beam-only settings.

        A fresh copy on each call: the caller may pass it to `generate` or change it without touching the model.
        The arguments are used as given; `translate` and the Circuits tab clamp them to the UI's limits first.
        """
        gen = copy.deepcopy(self.model.generation_config)
        gen.num_beams = num_beams
        gen.do_sample = False
        gen.max_new_tokens = None
        gen.max_length = max_new_tokens + 1  # the decoder start token counts too
        if num_beams == 1:  # beam-only settings would only draw warnings for greedy search
            gen.length_penalty = 1.0
            gen.early_stopping = False
            gen.num_return_sequences = 1
        return gen

    def translate(
        self, text, num_beams: int | None = None, max_new_tokens: int | None = None, with_attention: bool = True
    ) -> Translation:
        """Translate one sentence; with `with_attention`, also one teacher-forced pass for the attention maps.

        Safe to call from many threads at once: their `generate()` calls are served together (`batcher`)."""
        source = self.prepare(text)
        if source is None:
            return Translation(text="", source=None, notices=[EMPTY_MESSAGE])
        num_beams = int(num_beams or self.default_num_beams)
        num_beams = max(1, min(num_beams, 16))
        max_new_tokens = int(max_new_tokens or self.default_max_new_tokens)
        max_new_tokens = max(1, min(max_new_tokens, self.max_new_tokens_limit))
        t0 = time.perf_counter()
        generated = self.batcher.generate(source.input_ids, num_beams, max_new_tokens)  # with concurrent requests
        generate_ms = (time.perf_counter() - t0) * 1000
        config = self.model.config
        decoder_ids = decoder_ids_from_generated(generated, config.eos_token_id, config.pad_token_id)
        translation = self.tokenizer.decode(decoder_ids, skip_special_tokens=True).strip()
        notices = list(source.notices)
        if len(decoder_ids) - 1 >= max_new_tokens:
            notices.append(f"The translation stopped at the maximum length ({max_new_tokens} tokens).")
        attention, attention_ms = None, 0.0
        if with_attention:
            t1 = time.perf_counter()
            attention = build_attention_data(self.model, self.tokenizer, source.input_ids, decoder_ids)
            attention_ms = (time.perf_counter() - t1) * 1000
            self._remember((tuple(source.input_ids), tuple(decoder_ids)), attention)
        return Translation(
            text=translation,
            source=source,
            decoder_ids=decoder_ids,
            attention=attention,
            notices=notices,
            num_beams=num_beams,
            max_new_tokens=max_new_tokens,
            generate_ms=generate_ms,
            attention_ms=attention_ms,
        )


def ctranslate2_problem(folder: str) -> str | None:
    """Why the CTranslate2 copy in `folder`/ctranslate2 cannot serve this model's translations, or None."""
    copy_dir = os.path.join(folder, CTRANSLATE2_FOLDER)
    remake = (
        f"make it with `python -m training.export_marian {folder} /tmp/marian --ctranslate2 {copy_dir} --overwrite`"
    )
    if not os.path.isfile(os.path.join(copy_dir, "model.bin")):
        return f"{folder} has no CTranslate2 copy ({copy_dir}/model.bin); {remake}"
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return "the ctranslate2 package is not installed (pip install ctranslate2)"
    try:
        with open(os.path.join(copy_dir, CTRANSLATE2_RECORD), encoding="utf-8") as fh:
            recorded = json.load(fh).get("weights_sha256")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if not recorded:
        return f"{copy_dir} does not record which weights it was converted from ({CTRANSLATE2_RECORD}); re{remake}"
    if recorded != weights_sha256(folder):
        return (
            f"{copy_dir} was converted from other weights than {folder}/model.safetensors (the model was "
            f"retrained or replaced since); re{remake}"
        )
    return None


def load_bundle(source: ModelSource | str | None = None, engine: str = "auto") -> ModelBundle:
    """Load with `AutoModelForSeq2SeqLM` / `AutoTokenizer` and `trust_remote_code=True`, as from the Hub.

    `engine` decodes the translations: "torch" (`generate()`), "ctranslate2" (the folder's CTranslate2 copy; an
    error when it cannot) or "auto" (CTranslate2 where it can, else torch, with the reason in `engine_note`).
    Every analysis runs the PyTorch model, on the translation the engine produced."""
    if engine not in ENGINES:
        raise ModelSourceError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}.")
    if not isinstance(source, ModelSource):
        source = resolve_model_source(source)
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.ref, trust_remote_code=True)
        model = AutoModelForSeq2SeqLM.from_pretrained(source.ref, trust_remote_code=True)
    except (OSError, ValueError, ImportError, KeyError) as err:
        where = (
            f"the local folder {source.ref}"
            if source.is_local
            else f"the Hub repository {source.ref!r} (no local folder {os.path.abspath(source.ref)} exists)"
        )
        raise ModelSourceError(f"Could not load a model from {where} (from {source.origin}): {err}") from None
    bundle = ModelBundle(model, tokenizer, ref=source.ref)
    if engine != "torch":
        problem = (
            ctranslate2_problem(source.ref)
            if source.is_local
            else "a Hub model is served by PyTorch (CTranslate2 reads a local model folder's copy)"
        )
        if problem is None:
            bundle.use_ctranslate2(os.path.join(source.ref, CTRANSLATE2_FOLDER))
        elif engine == "ctranslate2":
            raise ModelSourceError(f"--engine ctranslate2: {problem}.")
        else:
            bundle.engine_note = f"translating with PyTorch: {problem}"
    return bundle


__all__ = [
    "BOX_MAX_CHARS",
    "EMPTY_MESSAGE",
    "MAX_BATCH_SENTENCES",
    "ModelBundle",
    "ModelSource",
    "ModelSourceError",
    "ENGINES",
    "ctranslate2_problem",
    "PreparedSource",
    "Translation",
    "load_bundle",
    "out_of_domain_note",
    "out_of_domain_reason",
    "replace_surrogates",
    "resolve_model_source",
]
