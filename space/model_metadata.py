"""What a model says about itself: its languages, what it learnt from, its name, and whether a reference is a Hub id.

A model folder of this project states its languages and training data in config.json (`source_lang`,
`target_lang`, `trained_on`, written at export); folders exported before that say so only in their model card
(README.md), which is read here as the fallback. The language names, the Hub-id rule and these readings live
only here: the Space uses them, and so do the training tools (`training.space_modules`). Standard library only,
so importing it costs nothing and needs neither torch nor gradio.
"""

from __future__ import annotations

import hashlib
import os
import re

LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "cs": "Czech", "es": "Spanish"}
DEFAULT_LANGS = ("en", "de")  # the shipped model: Multi30k English -> German
DEFAULT_TRAINED_ON = "Multi30k"
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
# A model folder may carry a CTranslate2 copy of itself in this sub-folder, with a record of the weights it was
# converted from ({"source": ..., "weights_sha256": the SHA-256 of model.safetensors}): a copy whose record does
# not match the folder's weights (a retrained model) is stale.
CTRANSLATE2_FOLDER = "ctranslate2"
CTRANSLATE2_RECORD = "converted_from.json"
_CARD_CHARS = 8000  # the front matter of a model card is read from its start; this much is plenty


def language_name(code: str) -> str:
    """The English name of a language code ("de" -> "German"); an unknown code is returned as it is."""
    return LANGUAGE_NAMES.get(code, code)


# --- where a model lives ------------------------------------------------------------------------------------


def is_hub_id(ref) -> bool:
    """True when `ref` has the Hub's `owner/name` form: one slash, each side starting with a letter or digit and
    holding only letters, digits, `.`, `_` and `-`."""
    return isinstance(ref, str) and _HUB_ID.fullmatch(ref) is not None


def looks_local(ref: str) -> bool:
    """True when `ref` is meant as a folder on this machine: it exists, or it is not a Hub id (it starts with
    `.`, `/` or `~`, has no slash or several, or other characters)."""
    return os.path.exists(ref) or not is_hub_id(ref)


# --- the model card (README.md), for folders whose config.json does not say -----------------------------------


def _card_text(folder: str | None) -> str | None:
    """The start of the model card in `folder`, or None when there is none."""
    if not folder:
        return None
    try:
        with open(os.path.join(folder, "README.md"), encoding="utf-8") as fh:
            return fh.read(_CARD_CHARS)
    except OSError:
        return None


def card_languages(folder: str | None) -> tuple[str, str] | None:
    """(source, target) from `language: [en, de]` (or a `- en` list) in the card's YAML front matter, or None."""
    text = _card_text(folder)
    if text is None:
        return None
    match = re.search(r"^language:\s*\n((?:\s*-\s*\S+\s*\n)+)", text, re.M) or re.search(
        r"^language:\s*\[([^\]]+)\]", text, re.M
    )
    if not match:
        return None
    langs = re.findall(r"[A-Za-z]{2,3}", match.group(1))
    return (langs[0], langs[1]) if len(langs) >= 2 else None


def card_trained_on(folder: str | None) -> str | None:
    """What the model learnt from, by its card: "Multi30k" (this project's runs), "OPUS" (a converted OPUS-MT
    model), or None when the card does not say."""
    text = _card_text(folder)
    if text is None:
        return None
    text = text.lower()
    if "opus-mt" in text or "- marian" in text:
        return "OPUS"
    return "Multi30k" if "multi30k" in text else None


def card_name(folder: str | None) -> str | None:
    """The model's name from the `model-index` of its card's YAML front matter (`- name: ...`), or None."""
    text = _card_text(folder)
    front = re.match(r"^---\s*\n(.*?)\n---", text, re.S) if text else None
    match = (
        re.search(r"^model-index:\s*\n\s*-\s*name:\s*['\"]?([^'\"\n]+?)['\"]?\s*$", front.group(1), re.M)
        if front
        else None
    )
    return match.group(1).strip() if match else None


# --- a loaded model: its config first, its folder's card second -----------------------------------------------


def _said(config, key: str) -> str | None:
    """`config.key` (a transformers config) or `config[key]` (config.json as a dict), when a non-empty string."""
    value = config.get(key) if isinstance(config, dict) else getattr(config, key, None)
    return value if isinstance(value, str) and value else None


def _folder(ref: str | None) -> str | None:
    return ref if ref and os.path.isdir(ref) else None


def config_languages(config) -> tuple[str, str] | None:
    """(source, target) as config.json states them (`source_lang`, `target_lang`), or None when it does not."""
    langs = (_said(config, "source_lang"), _said(config, "target_lang"))
    return langs if all(langs) else None


def model_languages(config, ref: str | None = None, default: tuple[str, str] = DEFAULT_LANGS) -> tuple[str, str]:
    """(source, target): config.json's, else the card's when `ref` is a local folder, else `default`."""
    return config_languages(config) or card_languages(_folder(ref)) or default


def model_trained_on(config, ref: str | None = None, default: str = DEFAULT_TRAINED_ON) -> str:
    """What the model learnt from ("Multi30k", "OPUS", ...): config.json's `trained_on`, else the card's when
    `ref` is a local folder, else `default`."""
    return _said(config, "trained_on") or card_trained_on(_folder(ref)) or default


def display_name(ref: str | None) -> str | None:
    """What to call the model at `ref`: a local folder's card name, else the folder's name; a Hub id as it is;
    None for no reference."""
    if _folder(ref):
        return card_name(ref) or os.path.basename(os.path.normpath(ref))
    return ref or None


# --- the weights ------------------------------------------------------------------------------------------


def weights_sha256(folder: str) -> str | None:
    """The SHA-256 of `folder`/model.safetensors (what a CTranslate2 copy records), or None without that file."""
    path = os.path.join(folder, "model.safetensors")
    if not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = [
    "CTRANSLATE2_FOLDER",
    "CTRANSLATE2_RECORD",
    "DEFAULT_LANGS",
    "DEFAULT_TRAINED_ON",
    "LANGUAGE_NAMES",
    "card_languages",
    "card_name",
    "card_trained_on",
    "config_languages",
    "display_name",
    "is_hub_id",
    "language_name",
    "looks_local",
    "model_languages",
    "model_trained_on",
    "weights_sha256",
]
