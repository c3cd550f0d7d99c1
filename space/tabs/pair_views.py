"""What the Circuits tab's sections share: the sentence pair they study, the input errors they show, the chips,
bars and CSS of their HTML, and the notices the API returns (`circuits_tab` and `attribution_views` both use it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from encdec_lens.inputs import generate_ids
from safe_html import TOKEN_CSS, escape, status_html
from translation_engine import EMPTY_MESSAGE, ModelBundle

PLOT_TITLES = {"encoder": "enc (encoder self)", "decoder": "dec-self (masked)", "cross": "cross (dec → enc)"}

NOT_TRANSLATED = (
    "Nothing translated yet: translate a sentence on the “Translate & attention” tab; this tab "
    "works on that translation."
)
STALE = "The source sentence has changed since it was translated: press Translate again."
CIRCUITS_CSS = (
    TOKEN_CSS
    + """
table.circuits { border-collapse: collapse; font-size: 0.88em; }
table.circuits td, table.circuits th { padding: 3px 8px; border-bottom: 1px solid rgba(148, 163, 184, 0.35);
       text-align: left; vertical-align: top; }
table.circuits th { white-space: nowrap; }  /* short headers ("log p, head off") on one line */
table.circuits td.num { text-align: right; font-family: ui-monospace, monospace; white-space: nowrap; }
.bar.neg { background: #dc2626; }
.bar.pos { background: #2563eb; }
.delta { font-size: 1.25em; font-weight: 700; font-family: ui-monospace, monospace; }
.changed { color: #b45309; font-weight: 600; }
.lens-wrap { overflow: auto; max-height: 720px; }
.cand { white-space: nowrap; font-family: ui-monospace, monospace; font-size: 0.92em; }
.cand.hit { background: rgba(34, 197, 94, 0.25); border-radius: 3px; font-weight: 700; }
.small { opacity: 0.7; font-size: 0.85em; }
"""
)


class CircuitsInputError(ValueError):
    """Input the tab cannot work on; the message says what to do and is shown to the user."""


# --- which sentence pair -----------------------------------------------------------------------------------
@dataclass
class Pair:
    """A source sentence and the translation to study, as token ids."""

    source_ids: list[int]
    target_ids: list[int]  # <start> y_1 .. y_n as the main tab keeps it, or y_1 .. y_n </s>
    notices: list[str] = field(default_factory=list)


def whole_number(value, default: int, name: str) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CircuitsInputError(f"{name} must be a whole number, got {value!r}.") from None


def generation_config(bundle: ModelBundle, beam_size=None, max_new_tokens=None):
    """The decoding of the Translate button (the model's settings, this beam size and length), same limits."""
    num_beams = max(1, min(whole_number(beam_size, bundle.default_num_beams, "beam_size"), 16))
    max_new = whole_number(max_new_tokens, bundle.default_max_new_tokens, "max_new_tokens")
    return bundle.generation_config_for(num_beams, max(1, min(max_new, bundle.max_new_tokens_limit)))


def pair_on_screen(bundle: ModelBundle, source, state) -> Pair:
    """The pair shown on the main tab: its exact token ids from the UI state, if the sentence still matches."""
    prepared = bundle.prepare(source)
    if prepared is None:
        raise CircuitsInputError(EMPTY_MESSAGE)
    if not state:
        raise CircuitsInputError(NOT_TRANSLATED)
    if list(state["source_ids"]) != prepared.input_ids:
        raise CircuitsInputError(STALE)
    return Pair(prepared.input_ids, list(state["decoder_ids"]), prepared.notices)


def pair_from_state(state) -> Pair:
    """The main tab's last translation, from its state alone (what the tab shows right after a translation,
    even if the source box has been edited since)."""
    if not state:
        raise CircuitsInputError(NOT_TRANSLATED)
    return Pair(list(state["source_ids"]), list(state["decoder_ids"]), list(state.get("notices", [])))


def pair_from_api(bundle: ModelBundle, source, translation="", beam_size=None, max_new_tokens=None) -> Pair:
    """The API's pair: the source, and the given translation, or the model's own (this decoding) if none."""
    prepared = bundle.prepare(source)
    if prepared is None:
        raise CircuitsInputError(EMPTY_MESSAGE)
    text = str(translation or "")
    if not text.strip():
        ids = generate_ids(
            bundle.model, prepared.input_ids, generation_config=generation_config(bundle, beam_size, max_new_tokens)
        )
        return Pair(prepared.input_ids, ids, prepared.notices)
    try:
        ids = bundle.target_ids(text)  # valid text, at most the model's output length
    except ValueError as err:
        raise CircuitsInputError(str(err)) from None
    return Pair(prepared.input_ids, ids, prepared.notices)


def message_html(message: str) -> str:
    return status_html([message])


def chip(text: str) -> str:
    return f'<span class="tok"><bdi>{escape(text)}</bdi></span>'


def bar(value: float, scale: float) -> str:
    kind = "neg" if value < 0 else "pos"
    return f'<span class="bar {kind}" style="width:{max(1, round(80 * abs(value) / max(scale, 1e-9)))}px"></span>'


def with_notices(data: dict, pair: Pair) -> dict:
    """The result plus what the Space did to the input (cut a long sentence, ...)."""
    return {**data, "notices": pair.notices}


def target_position(value) -> int:
    """The UI's 1-based position (or -1 for the last) -> the library's 0-based one."""
    position = whole_number(value, 1, "position")
    if position == 0:
        raise CircuitsInputError("Positions count from 1 (the first token of the translation); -1 is the last.")
    return position - 1 if position > 0 else position
