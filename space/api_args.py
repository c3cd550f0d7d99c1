"""Up-front checks of the API's arguments, before any work is done.

A hand-made API call can send any JSON value for any argument: `"abc"` or `null` for a number, a list for a
text. Such a value is refused with `gr.Error`, whose message names the argument, says what it takes and what
came; the server's log gets one line, not a traceback. `null` stands for an empty text or an empty list of
heads; a number or a flag must be given, or left out for its default.
"""

from __future__ import annotations

import json
import logging
import math

import gradio as gr

LOG = logging.getLogger("space")


def shown(value) -> str:
    """A value as the caller sent it, in JSON words: null, true, "abc", [1, 2], 1.5."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def refuse(name: str, value, allowed: str):
    """Raise the `gr.Error` for argument `name`, which takes `allowed`, and log one line for it."""
    message = f"{name} must be {allowed}; got {shown(value)}."
    LOG.warning("space/app.py: refused %s", message)
    raise gr.Error(message, print_exception=False)


def text(name: str, value) -> str:
    """A text argument: a string, or null for the empty text."""
    if value is None:
        return ""
    if not isinstance(value, str):
        refuse(name, value, "a string")
    return value


def is_whole_number(value) -> bool:
    """5 or 5.0; not "5", true, 1.5, NaN, infinity or null."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and int(value) == value


def whole_number(name: str, value, allowed: str = "a whole number") -> int:
    """A whole-number argument; `allowed` says what it takes (ranges are checked where the value is used)."""
    if not is_whole_number(value):
        refuse(name, value, allowed)
    return int(value)


def flag(name: str, value) -> bool:
    """A true/false argument."""
    if not isinstance(value, bool):
        refuse(name, value, "true or false")
    return value


def labels(name: str, value, example: str) -> list[str]:
    """A list of strings (or one comma-separated string, or null for none), e.g. head labels."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        refuse(name, value, f"a list of strings such as [{example!r}]")
    return value


__all__ = ["flag", "is_whole_number", "labels", "refuse", "shown", "text", "whole_number"]
