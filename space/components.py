"""What the main tab and the optional tabs build alike: pictures, and the settings of the events that keep a view
up to date."""

from __future__ import annotations

import gradio as gr

# A view that follows a picker or a new translation: not on the API, no progress overlay, and "always_last": an
# event that comes while one runs is not dropped but runs once that one is done, so the view ends on the newest.
FOLLOW_UP = dict(api_visibility="private", show_progress="hidden", trigger_mode="always_last")


def picture(elem_id: str, value=None, *, label: str | None = None, **options) -> gr.Image:
    """A read-only picture from an RGB array, sent as PNG, with download and full-screen buttons; `label` is not
    shown on screen. `options`: more `gr.Image` arguments (`placeholder`)."""
    return gr.Image(
        value,
        label=label,
        type="numpy",
        format="png",
        interactive=False,
        elem_id=elem_id,
        show_label=False,
        buttons=["download", "fullscreen"],
        **options,
    )


__all__ = ["FOLLOW_UP", "picture"]
