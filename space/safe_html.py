"""HTML fragments for the Space, with every piece of user or model text escaped.

`gr.HTML` inserts its value as markup (scripts do not run, but attributes such as `onerror` would), so
nothing typed by a user or produced by the model reaches it unescaped. Control and bidirectional
formatting characters are shown as visible `\\x..` / `\\u....` escapes, and each token sits in its own
`<bdi>` so right-to-left text cannot reorder its neighbours.
"""

from __future__ import annotations

import html
import unicodedata

# Styles live in the components' `css_template`s (see app.py); these are the class names they style.
TOKEN_CSS = """
.tokens { display: flex; flex-wrap: wrap; gap: 4px; margin: 4px 0 8px; }
.tok { font-family: ui-monospace, monospace; font-size: 0.85em; padding: 1px 5px; border-radius: 4px;
       background: rgba(99, 102, 241, 0.12); border: 1px solid rgba(99, 102, 241, 0.35); white-space: pre; }
.tok.special { background: rgba(148, 163, 184, 0.2); border-color: rgba(148, 163, 184, 0.6); }
.tok .idx { opacity: 0.55; font-size: 0.8em; margin-right: 3px; }
.notice { padding: 6px 10px; border-radius: 6px; background: rgba(234, 179, 8, 0.15);
          border: 1px solid rgba(234, 179, 8, 0.5); margin: 4px 0; }
.ok { opacity: 0.75; font-size: 0.9em; }
table.links { border-collapse: collapse; font-size: 0.9em; margin: 4px 0 10px; border: none !important; }
table.links tr { border: none !important; }
/* Gradio's page style frames every table cell in the text colour; with these light row lines collapsed into
   that frame, the last row lost its bottom edge and the table looked cut off. Only the row lines stay. */
table.links td, table.links th { padding: 3px 8px; border: none !important;
       border-bottom: 1px solid rgba(148, 163, 184, 0.6) !important; text-align: left; vertical-align: middle; }
.bar { display: inline-block; height: 8px; background: #6366f1; border-radius: 2px; margin-left: 4px; }
"""

_INVISIBLE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def visible(text: str) -> str:
    """Control, format (bidi overrides, zero-width) and unassigned characters as `\\x..`/`\\u....` escapes."""
    out = []
    for ch in str(text):
        if unicodedata.category(ch) in _INVISIBLE:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else (f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"))
        else:
            out.append(ch)
    return "".join(out)


_TEMPLATE_CHARS = str.maketrans({"$": "&#36;", "{": "&#123;", "}": "&#125;", "`": "&#96;"})


def escape(text: str) -> str:
    """Safe between HTML tags, in a quoted attribute, and inside gr.HTML's `${value}` / Handlebars template."""
    return html.escape(visible(text), quote=True).translate(_TEMPLATE_CHARS)


def tokens_html(tokens: list[str], special: set[str] | None = None, title: str = "") -> str:
    special = special or set()
    chips = []
    for i, token in enumerate(tokens):
        cls = "tok special" if token in special else "tok"
        chips.append(f'<span class="{cls}" title="#{i}"><span class="idx">{i}</span><bdi>{escape(token)}</bdi></span>')
    heading = f"<div><b>{escape(title)}</b> ({len(tokens)} tokens)</div>" if title else ""
    return f'{heading}<div class="tokens" dir="ltr">{"".join(chips)}</div>'


def status_html(notices: list[str], timing: str = "") -> str:
    parts = [f'<div class="notice">{escape(n)}</div>' for n in notices]
    if timing:
        parts.append(f'<div class="ok">{escape(timing)}</div>')
    return "".join(parts)


def links_html(
    query_token: str, query_index: int, links: list[list[tuple[int, str, float]]], head_label: str, family_title: str
) -> str:
    """Per layer, the keys one query token attends to most (with a bar for each weight)."""
    rows = []
    for layer, top in enumerate(links):
        cells = []
        for key_index, key_token, weight in top:
            cells.append(
                f'<td><span class="tok"><span class="idx">{key_index}</span><bdi>{escape(key_token)}</bdi></span>'
                f' {weight:.2f}<span class="bar" style="width:{max(1, round(60 * weight))}px"></span></td>'
            )
        rows.append(f"<tr><th>Layer {layer + 1}</th>{''.join(cells)}</tr>")
    k = max((len(t) for t in links), default=0)
    header = "".join(f"<th>#{i + 1}</th>" for i in range(k))
    return (
        f'<div>Strongest links of <span class="tok"><span class="idx">{query_index}</span>'
        f"<bdi>{escape(query_token)}</bdi></span> · {escape(family_title)} · {escape(head_label)}</div>"
        f'<table class="links"><tr><th>layer</th>{header}</tr>{"".join(rows)}</table>'
    )


__all__ = ["TOKEN_CSS", "escape", "links_html", "status_html", "tokens_html", "visible"]
