"""The Space: translate with the original Transformer and look at every attention head while it reads.

    python space/app.py [--model PATH_OR_HUB_ID] [--host 127.0.0.1] [--port 7860]

The model comes from `--model`, else the `MODEL_ID` environment variable, else `model/` next to this
file, and is loaded with `AutoModelForSeq2SeqLM` / `AutoTokenizer` and `trust_remote_code=True`, exactly
as a Hub user would load it. On Hugging Face Spaces this folder is the repository root, so the sibling
modules are imported as top-level modules.

Extension points: `build_demo(bundle)` builds the whole app from one `ModelBundle`; any of the optional
tab modules in `OPTIONAL_TABS` that can be imported adds a tab (see `discover_tabs`).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import importlib.util
import logging
import os
import sys
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # imported from elsewhere (tests, a notebook): make the sibling modules importable
    sys.path.insert(0, HERE)

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

import api_args  # noqa: E402

from encdec_lens.attention import AttentionData  # noqa: E402
from encdec_lens.heads import FAMILIES, FAMILY_SIDES, FAMILY_TITLES  # noqa: E402
from encdec_lens.plots import head_grid_image, heatmap_image  # noqa: E402
from batching import CTranslate2Batcher  # noqa: E402
from components import FOLLOW_UP, picture  # noqa: E402
from safe_html import TOKEN_CSS, links_html, status_html, tokens_html, visible  # noqa: E402
from translation_engine import (  # noqa: E402
    BOX_MAX_CHARS,
    EMPTY_MESSAGE,
    ENGINES,
    MAX_BATCH_SENTENCES,
    MAX_INPUT_CHARS,
    ModelBundle,
    ModelSourceError,
    load_bundle,
    resolve_model_source,
)

# Image captions first (the kind of sentence the model learnt from), then the sentence people come for.
SEED_EXAMPLE = "The animal didn't cross the street because it was too tired."
EXAMPLES = [
    "A man in a blue shirt is standing on a ladder cleaning windows.",
    "Two young children are playing with a ball in the park.",
    "A woman in a red dress is walking her dog along the beach.",
    "A group of people are sitting at a table in a busy restaurant.",
    SEED_EXAMPLE,
]
SEED_NOTE = (
    f"The last example, *{SEED_EXAMPLE}*, is the sentence about what “it” refers to, not an image caption: "
    "it lies outside what this model learnt from (Multi30k captions), so expect a fluent but wrong "
    "translation (a negation or a because-clause may be lost). It is here for its attention to “it”; the "
    "captions above it show what the model translates well."
)
CTRANSLATE2_NOTE = (
    "Translations are decoded by **CTranslate2**, this model's weights converted to its fused CPU "
    "kernels (float32: the same translations as PyTorch's `generate()`, several times faster). The "
    "attention maps and every analysis run the PyTorch model, on the translation CTranslate2 wrote."
)

EXPLAINER = """\
**What you are looking at.** Each row is one token *attending* (the query), each column a token it can
attend to (a key); a row's weights come out of a softmax and sum to 1. A weight says how much of that
position's value vector is mixed into this one, in this layer and this head — not *why* the model chose a
word: after the first layer every position already carries a mixture of its neighbours. Attention is not
an explanation and **cross-attention is not a word alignment**: heads often park most of their weight on
the end-of-sentence token `</s>` or on punctuation when they have nothing to fetch, and different heads
disagree. Decoder self-attention is masked, so its upper triangle is empty. Decoder rows are labelled with
the token the decoder *reads* at that step (`<s>` first); from it the model predicts the next token.
All maps come from one teacher-forced forward pass over the final translation.
"""

OPTIONAL_TABS = ("tabs.walkthrough_tab", "tabs.circuits_tab", "tabs.circuit_graph_tab", "tabs.heads_tab")
HEAD_MEAN = "mean"
TRANSLATION = "translation"  # the name under which ViewKeys records the main tab's translations
SOURCE_INFO = (
    f"The box keeps at most {BOX_MAX_CHARS:,} characters and drops the rest of a longer paste; the "
    f"model reads the first {MAX_INPUT_CHARS:,} characters, up to {{tokens}} subword tokens."
)
M_ARENA_MAX = -8  # glibc's mallopt parameter for the number of malloc arenas
MAX_UPLOAD_BYTES = 0  # no component takes a file: every non-empty upload is refused (HTTP 413)
LOG = logging.getLogger("space")


class ViewKeys:
    """Per browser session, the key of the newest translation (and of any other thing a tab shows), so that
    no view ends up showing an older one.

    Every translation on the main tab gets a fresh key (`new_key`), kept in its state (`attention_state["key"]`)
    and published here for the session. Each view derived from a state (the explorer, the other tabs) is
    computed for that state's key and returned through `latest`: if a newer key was published meanwhile, the
    result is late and dropped (`gr.skip()`, nothing on the page changes); the follow-up for the newer
    translation, which Gradio runs after the pending one (`trigger_mode="always_last"`), draws the view. A
    tab may keep keys of its own under another `name` (the "Inside one head" tab's sentence pair).

    Calls without a browser session (direct calls, tests) are always current, as is a key for a session that
    has published nothing under that name. Bounded: the least recently used sessions are forgotten first.
    """

    def __init__(self, max_sessions: int = 4096):
        self.max_sessions = max_sessions
        self._keys: OrderedDict = OrderedDict()  # session hash -> {name: key}
        self._lock = threading.Lock()

    @staticmethod
    def new_key() -> str:
        return uuid.uuid4().hex[:16]

    @staticmethod
    def key_of(value) -> str | None:
        """The key a state (a dict with "key") carries; None for None or a state without one."""
        return value.get("key") if isinstance(value, dict) else None

    @staticmethod
    def _session(request) -> str | None:
        return getattr(request, "session_hash", None)

    def publish(self, request, key, name: str = TRANSLATION) -> None:
        """`key` is now the newest under `name` for the request's session."""
        session = self._session(request)
        if session is None:
            return
        with self._lock:
            self._keys.setdefault(session, {})[name] = key
            self._keys.move_to_end(session)
            while len(self._keys) > self.max_sessions:
                self._keys.popitem(last=False)

    def is_current(self, request, key, name: str = TRANSLATION) -> bool:
        session = self._session(request)
        if session is None:
            return True
        with self._lock:
            keys = self._keys.get(session)
            return keys is None or name not in keys or keys[name] == key

    def latest(self, request, outputs, key, name: str = TRANSLATION):
        """`outputs` when `key` is still the newest under `name`, else `gr.skip()` (the late result is dropped)."""
        return outputs if self.is_current(request, key, name) else gr.skip()


def checked_slider(slider: gr.Slider, name: str) -> gr.Slider:
    """`slider`, refusing what only a hand-made API call sends: a value that is not a whole number (`"abc"`, null,
    a list) with a message naming the API argument `name` and its range, an out-of-range value with Gradio's
    own message; either way the server's console gets one line instead of a traceback.

    The instance's `preprocess` is wrapped (a subclass of a Gradio component would make Gradio write a `.pyi`
    stub next to this file)."""
    check = slider.preprocess

    def preprocess(payload):
        if not api_args.is_whole_number(payload):
            api_args.refuse(name, payload, f"a whole number from {slider.minimum:g} to {slider.maximum:g}")
        try:
            return check(payload)
        except gr.Error as err:
            LOG.warning("space/app.py: refused %s = %r: %s", slider.label, payload, err.message)
            raise gr.Error(err.message, print_exception=False) from None

    slider.preprocess = preprocess
    return slider


def checked_textbox(textbox: gr.Textbox, name: str) -> gr.Textbox:
    """`textbox`, refusing a value that is not a string (a list, a number) from a hand-made API call with a
    message naming the API argument `name`; null stays the empty text."""
    read = textbox.preprocess

    def preprocess(payload):
        return read(api_args.text(name, payload))

    textbox.preprocess = preprocess
    return textbox


@dataclass
class SharedUI:
    """What an optional tab may hook into: the model and the main tab's components and events."""

    bundle: ModelBundle
    source: gr.Textbox  # the source sentence
    translation: gr.Textbox  # the final translation
    beam_size: gr.Slider
    max_new_tokens: gr.Slider
    attention_state: gr.State  # the last translation, or None: {"key", "source", "translation", "notices",
    # "source_ids", "decoder_ids"}; `bundle.attention_for(value)` turns it into the AttentionData (cached)
    translate_event: object  # the click dependency: `shared.translate_event.then(fn, ...)` runs after it
    # (use trigger_mode="always_last" and return through `views.latest`, so the newest translation wins)
    views: ViewKeys = field(default_factory=ViewKeys)  # which translation is the newest, per session


def explainer(bundle: ModelBundle) -> str:
    """EXPLAINER naming the model's own decoder start token (`<s>` for this project's models, `<pad>` for a
    converted Marian model)."""
    start_id = getattr(bundle.model.config, "decoder_start_token_id", None)
    start = bundle.tokenizer.convert_ids_to_tokens(int(start_id)) if start_id is not None else None
    return EXPLAINER.replace("`<s>` first", f"`{start}` first") if start and "`" not in start else EXPLAINER


def discover_tabs(names=OPTIONAL_TABS) -> list:
    """Import each optional tab module that exists; a module with a bug still raises (it is not hidden)."""
    modules = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            modules.append(importlib.import_module(name))
    return modules


# --- handlers (plain functions of the bundle and the inputs: testable without a server) ------------------
def translate_outputs(bundle: ModelBundle, text, beam_size, max_new_tokens, key: str | None = None):
    """translation, status HTML, source-token HTML, target-token HTML, and the state: the pair's ids and texts.

    The per-session state holds the ids, the texts and notices of the pair and its `key` (new unless given:
    see `ViewKeys`); the attention maps stay in the bundle's small bounded cache.
    """
    result = bundle.translate(text, beam_size, max_new_tokens)
    if result.empty:
        return "", status_html([EMPTY_MESSAGE]), "", "", None
    data = result.attention
    special = set(bundle.tokenizer.all_special_tokens)
    search = "greedy search" if result.num_beams == 1 else f"beam search, {result.num_beams} beams"
    timing = (
        f"{bundle.language_pair} · {search} · translated in {result.generate_ms:.0f} ms, "
        f"attention maps in {result.attention_ms:.0f} ms"
    )
    return (
        result.text,
        status_html(result.notices, timing),
        tokens_html(data.source_tokens, special, "Source subword tokens"),
        tokens_html(data.target_tokens, special, "Target subword tokens, as the decoder reads them"),
        {
            "key": key or ViewKeys.new_key(),
            "source": result.source.text,
            "translation": result.text,
            "notices": list(result.notices),
            "source_ids": list(data.source_ids),
            "decoder_ids": list(data.target_ids),
        },
    )


def attention_json(bundle: ModelBundle, text, beam_size=None, max_new_tokens=None) -> dict:
    """The API's attention answer: translation, token lists and [layer][head][query][key] matrices."""
    result = bundle.translate(text, beam_size, max_new_tokens)
    if result.empty:
        return {
            "translation": "",
            "notices": [EMPTY_MESSAGE],
            "source_tokens": [],
            "target_tokens": [],
            "encoder": [],
            "decoder": [],
            "cross": [],
        }
    return {"translation": result.text, "notices": result.notices, **result.attention.to_dict()}


def default_query(data: AttentionData, family: str) -> int:
    """Which token the 'strongest links' panel starts on: "it" in the source if present, else a real token."""
    tokens = data.query_tokens(family)
    if FAMILY_SIDES[family][0] == "source":
        for i, token in enumerate(tokens):
            if token.replace("▁", "").lower() == "it":
                return i
        return 0
    return 1 if len(tokens) > 1 else 0


def _query_index(data: AttentionData, family: str, value) -> int:
    side = FAMILY_SIDES[family][0]
    if isinstance(value, str) and ":" in value:
        value_side, _, index = value.partition(":")
        if value_side == side and index.isdigit() and int(index) < len(data.query_tokens(family)):
            return int(index)
    return default_query(data, family)


def explorer_outputs(data: AttentionData | None, family, layer, head, query):
    """Picker updates, heatmap, head grid and strongest-links HTML for the current selection."""
    if data is None:
        return gr.update(), gr.update(), gr.update(), None, None, ""
    family = family if family in FAMILIES else "encoder"
    n_layers, n_heads = data.num_layers(family), data.num_heads(family)
    layer_index = min(max(int(layer) - 1, 0), n_layers - 1) if str(layer).isdigit() else n_layers - 1
    head_index = None
    if str(head).isdigit():
        head_index = min(max(int(head) - 1, 0), n_heads - 1)
    head_label = "mean over heads" if head_index is None else f"head {head_index + 1}"
    query_index = _query_index(data, family, query)
    side = FAMILY_SIDES[family][0]
    queries, keys = data.query_tokens(family), data.key_tokens(family)
    title = f"{FAMILY_TITLES[family]} · layer {layer_index + 1} · {head_label}"
    heatmap = heatmap_image(
        data.matrix(family, layer_index, head_index),
        queries,
        keys,
        title,
        row_axis=f"{FAMILY_SIDES[family][0]} token",
        col_axis=f"{FAMILY_SIDES[family][1]} token",
    )
    grid = head_grid_image(
        data.layers(family)[layer_index],
        f"{FAMILY_TITLES[family]} · layer {layer_index + 1} · all heads",
        selected=head_index,
    )
    links = links_html(
        queries[query_index],
        query_index,
        data.strongest_links(family, query_index, head_index),
        head_label,
        FAMILY_TITLES[family],
    )
    return (
        gr.update(choices=[str(i) for i in range(1, n_layers + 1)], value=str(layer_index + 1)),
        gr.update(
            choices=[HEAD_MEAN] + [str(i) for i in range(1, n_heads + 1)],
            value=HEAD_MEAN if head_index is None else str(head_index + 1),
        ),
        gr.update(
            choices=[(f"{i}: {visible(t)}", f"{side}:{i}") for i, t in enumerate(queries)],
            value=f"{side}:{query_index}",
        ),
        heatmap,
        grid,
        links,
    )


# --- the app ---------------------------------------------------------------------------------------------
def build_demo(bundle: ModelBundle, tabs=None) -> gr.Blocks:
    """The whole app for one loaded model. `tabs`: tab modules to add (default: `discover_tabs()`).

    A tab module has `TAB_TITLE` and `build(bundle, shared)`, called inside its `gr.Tab`, where `shared`
    is a `SharedUI`.
    """
    config = bundle.model.config
    views = ViewKeys()
    with gr.Blocks(
        title="Attention Is All You Need — attention explorer", analytics_enabled=False, delete_cache=(1800, 3600)
    ) as demo:
        gr.Markdown(
            "# Attention Is All You Need — translate and watch every head\n"
            f"{bundle.origin} {bundle.describe()} · "
            f"model `{bundle.display_name}`"
        )
        if bundle.engine == CTranslate2Batcher.engine:
            gr.Markdown(CTRANSLATE2_NOTE, elem_id="engine-note")
        with gr.Tab("Translate & attention", id="translate"):
            with gr.Row():
                with gr.Column():
                    source = checked_textbox(
                        gr.Textbox(
                            label=f"Source ({bundle.language_pair.split(' → ')[0]})",
                            lines=3,
                            placeholder="Type an English sentence…",
                            elem_id="src",
                            max_length=BOX_MAX_CHARS,
                            info=SOURCE_INFO.format(tokens=bundle.max_source_tokens),
                        ),
                        "text",
                    )
                    with gr.Row():
                        beam_size = checked_slider(
                            gr.Slider(
                                1,
                                8,
                                value=bundle.default_num_beams,
                                step=1,
                                label="Beam size (1 = greedy)",
                                elem_id="beam-size",
                            ),
                            "beam_size",
                        )
                        max_new_tokens = checked_slider(
                            gr.Slider(
                                4,
                                bundle.max_new_tokens_limit,
                                value=bundle.default_max_new_tokens,
                                step=1,
                                label="Maximum output tokens",
                                elem_id="max-new-tokens",
                            ),
                            "max_new_tokens",
                        )
                    button = gr.Button("Translate", variant="primary", elem_id="translate-btn")
                with gr.Column():
                    translation = gr.Textbox(
                        label=f"Translation ({bundle.language_pair.split(' → ')[1]})",
                        lines=3,
                        interactive=False,
                        elem_id="translation",
                        buttons=["copy"],
                    )
                    status = gr.HTML(label="status", elem_id="status", css_template=TOKEN_CSS)
            # Filling the box is UI-only: not an API endpoint (Gradio's default, "undocumented", is still callable).
            gr.Examples(
                examples=[[e] for e in EXAMPLES],
                inputs=[source],
                label="Examples",
                elem_id="examples",
                api_visibility="private",
            )
            if bundle.trained_on == "Multi30k":
                gr.Markdown(SEED_NOTE, elem_id="examples-note")
            source_tokens = gr.HTML(label="source tokens", elem_id="src-tokens", css_template=TOKEN_CSS)
            target_tokens = gr.HTML(label="target tokens", elem_id="out-tokens", css_template=TOKEN_CSS)

            gr.Markdown("## Attention explorer")
            gr.Markdown(explainer(bundle), elem_id="attention-explainer")
            attention_state = gr.State(None)
            with gr.Row():
                family = gr.Radio(
                    [(FAMILY_TITLES[f], f) for f in FAMILIES],
                    value="encoder",
                    label="Attention",
                    elem_id="family",
                    scale=2,
                )
                layer = gr.Radio(
                    [str(i) for i in range(1, config.encoder_layers + 1)],
                    value=str(config.encoder_layers),
                    label="Layer",
                    elem_id="layer",
                )
                head = gr.Radio(
                    [HEAD_MEAN] + [str(i) for i in range(1, config.encoder_attention_heads + 1)],
                    value=HEAD_MEAN,
                    label="Head",
                    elem_id="head",
                )
            with gr.Row():
                with gr.Column(scale=3):
                    heatmap = picture(
                        "heatmap",
                        label="Attention weights (rows: attending token, columns: attended token)",
                        placeholder="Translate a sentence to see its attention.",
                    )
                with gr.Column(scale=2):
                    grid = picture("head-grid", label="All heads of this layer (selected head framed in red)")
                    query = gr.Dropdown(
                        choices=[],
                        label="Pick a token: where does it look, layer by layer?",
                        elem_id="query-token",
                        allow_custom_value=False,
                    )
                    links = gr.HTML(label="strongest links", elem_id="links", css_template=TOKEN_CSS)

            def translate(text: str, beam_size: int, max_new_tokens: int, request: gr.Request):
                outputs = translate_outputs(bundle, text, beam_size, max_new_tokens)
                views.publish(request, ViewKeys.key_of(outputs[-1]))
                return outputs

            # "always_last": a click while a translation runs is not lost; it runs once that one is done.
            translate_event = button.click(
                translate,
                inputs=[source, beam_size, max_new_tokens],
                outputs=[translation, status, source_tokens, target_tokens, attention_state],
                api_name="translate",
                api_description="Translate a sentence. Returns the translation, then status, source-token and "
                "target-token HTML.",
                trigger_mode="always_last",
                concurrency_limit=MAX_BATCH_SENTENCES,  # concurrent translations share one generate() call
            )

            def explore(state, family_, layer_, head_, query_, request: gr.Request):
                outputs = explorer_outputs(bundle.attention_for(state), family_, layer_, head_, query_)
                return views.latest(request, outputs, ViewKeys.key_of(state))

            explorer_inputs = [attention_state, family, layer, head, query]
            explorer_views = [layer, head, query, heatmap, grid, links]
            # Every follow-up of a translation is "always_last": with Gradio's default ("once") a follow-up still
            # running when the next translation arrives made Gradio skip the new one, and the view stayed on
            # the older sentence for good.
            follow_up = dict(fn=explore, inputs=explorer_inputs, outputs=explorer_views, **FOLLOW_UP)
            translate_event.then(**follow_up)
            for picker in (family, layer, head, query):
                picker.input(**follow_up)

            def attention(
                text: str,
                beam_size: int = bundle.default_num_beams,
                max_new_tokens: int = bundle.default_max_new_tokens,
            ) -> dict:
                """Translate, then return the tokens and every attention map as JSON:
                `encoder`/`decoder`/`cross` are [layer][head][query][key]; see `layout` and `shapes`."""
                return attention_json(
                    bundle,
                    api_args.text("text", text),
                    api_args.whole_number("beam_size", beam_size),
                    api_args.whole_number("max_new_tokens", max_new_tokens),
                )

            gr.api(attention, api_name="attention", concurrency_limit=MAX_BATCH_SENTENCES)

        shared = SharedUI(
            bundle, source, translation, beam_size, max_new_tokens, attention_state, translate_event, views
        )
        for module in discover_tabs() if tabs is None else tabs:
            with gr.Tab(getattr(module, "TAB_TITLE", module.__name__)):
                module.build(bundle, shared)
    demo.queue(max_size=64)
    return demo


def launch(demo: gr.Blocks, patience_s: float = 60.0, **kwargs):
    """`demo.launch(**kwargs)`, with Gradio's localhost self-check made patient.

    Before returning, `launch()` checks that the new server answers on localhost, giving up after one
    3-second timeout and then raising "When localhost is not accessible, a shareable link must be
    created". On a busy machine (CI, a training run next door) that fails although the server is fine,
    so the check is retried here for up to `patience_s` seconds.

    Uploads are refused (`max_file_size=MAX_UPLOAD_BYTES` unless given): the app has no file input, and Gradio's
    `/gradio_api/upload` otherwise stores any file of any size.
    """
    from gradio import networking

    original = networking.url_ok

    def patient_url_ok(url: str) -> bool:
        deadline = time.monotonic() + patience_s
        while not original(url):
            if time.monotonic() > deadline:
                return False
        return True

    networking.url_ok = patient_url_ok
    kwargs.setdefault("max_file_size", MAX_UPLOAD_BYTES)
    try:
        return demo.launch(**kwargs)
    finally:
        networking.url_ok = original


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Translate with the original Transformer and explore its attention.")
    parser.add_argument(
        "--model", default=None, help="model folder or Hub id (default: $MODEL_ID, else model/ next to app.py)"
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=os.environ.get("TRANSLATE_ENGINE", "auto"),
        help="what decodes the translations: the model folder's CTranslate2 copy (its ctranslate2/ "
        "folder: several times faster, the same translations), PyTorch's generate(), or auto "
        "(CTranslate2 where the copy and the package are there; default, or $TRANSLATE_ENGINE). "
        "Every analysis runs the PyTorch model",
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="address to listen on (default 127.0.0.1; Spaces set GRADIO_SERVER_NAME=0.0.0.0)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        help="port to listen on (default 7860, or $GRADIO_SERVER_PORT)",
    )
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads per request (default 1; 0 = torch's choice). This model's matrices "
        "are small: one thread is about as fast alone and many times faster on a shared CPU",
    )
    return parser.parse_args(argv)


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Let glibc's malloc keep at most `arenas` heaps. By default every thread that allocates gets a heap of its
    own (up to 8 per core) and keeps what was freed there: with a translation in each of Gradio's worker threads
    the server's RSS grew by hundreds of MiB under load. True when set; a no-op without glibc."""
    try:
        return ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas) == 1
    except (OSError, AttributeError):
        return False


def main(argv=None) -> int:
    args = parse_args(argv)
    limit_malloc_arenas()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        bundle = load_bundle(resolve_model_source(args.model), engine=args.engine)
    except ModelSourceError as err:
        print(f"space/app.py: {err}", file=sys.stderr)
        return 2
    if bundle.engine_note:
        print(f"space/app.py: {bundle.engine_note}", file=sys.stderr)
    demo = build_demo(bundle)
    try:
        launch(demo, server_name=args.host, server_port=args.port, share=args.share)
    except OSError as err:
        if "empty port" in str(err):
            print(
                f"space/app.py: port {args.port} on {args.host} is in use (another server?); pick a free one "
                f"with --port, e.g. --port {args.port + 1}.",
                file=sys.stderr,
            )
        else:
            print(f"space/app.py: cannot serve on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
