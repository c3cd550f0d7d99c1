"""Shared fixtures: a tiny config, a real tokenizer trained on Multi30k lines, and a saved model folder.

Nothing is downloaded: the tokenizer is trained here on `../shared/data/multi30k` (or the folder named by
MULTI30K_DIR), and models are built from configs.
"""

import contextlib
import os
import shutil
import subprocess
import sys
import textwrap

# Before gradio is imported anywhere: no analytics threads, no Hub calls, no proxy for loopback.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
for _var in ("NO_PROXY", "no_proxy"):
    os.environ[_var] = ",".join(filter(None, [os.environ.get(_var, ""), "127.0.0.1,localhost"]))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (ROOT, os.path.join(ROOT, "space")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import pytest  # noqa: E402
import torch  # noqa: E402


def _find_multi30k():
    """MULTI30K_DIR, else `shared/data/multi30k` beside the checkout (../shared) or beside /work/main."""
    if os.environ.get("MULTI30K_DIR"):
        return os.environ["MULTI30K_DIR"]
    for candidate in (os.path.join(ROOT, "..", "shared", "data", "multi30k"), "/work/shared/data/multi30k"):
        if os.path.isfile(os.path.join(candidate, "train.en.gz")):
            return os.path.abspath(candidate)
    return os.path.join(ROOT, "..", "shared", "data", "multi30k")


DATA_DIR = _find_multi30k()


# --- a Python process that cannot import this project (for "loads where the project is not installed") ----
# Prepended to a child's code. It takes the project off every import path: the working directory and
# PYTHONPATH (`run_without_project` empties both), any sys.path entry inside the checkout except a virtual
# environment there, and the editable install's finder (pip's `__editable__` .pth installs one); then it proves
# that worked. The child's own arguments follow the checkout's path: sys.argv[2:].
WITHOUT_PROJECT = textwrap.dedent("""
    import importlib, importlib.util, json, os, sys
    root = os.path.realpath(sys.argv[1])

    def inside(path):
        path = os.path.realpath(path or os.getcwd())
        if "site-packages" in path or path == sys.prefix or path.startswith(sys.prefix + os.sep):
            return False
        return path == root or path.startswith(root + os.sep)

    sys.path[:] = [p for p in sys.path if not inside(p)]
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
    sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in getattr(h, "__module__", "")]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    for name in ("modeling", "configuration", "training"):
        assert importlib.util.find_spec(name) is None, f"{name} is still importable"
""")


def run_without_project(code: str, args, tmp, timeout: int = 300, **env_extra) -> subprocess.CompletedProcess:
    """Run `WITHOUT_PROJECT + code` with `args` in a fresh process, from a directory outside the checkout, with
    its own Hub caches under `tmp`, offline, on one thread. Fails the test with the child's stderr."""
    workdir = tmp / "elsewhere"
    workdir.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME")}
    env.update(
        PYTHONPATH="",
        HF_HOME=str(tmp / "hf_home"),
        HF_MODULES_CACHE=str(tmp / "hf_modules"),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONDONTWRITEBYTECODE="1",
        **env_extra,
    )
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_PROJECT + textwrap.dedent(code), ROOT, *map(str, args)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    return result


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models run ~100x faster on one thread than with 2 threads fighting over 2 busy cores. For every test
    module: none needs a fixture of its own for this."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_config(**overrides):
    from configuration import TransformerConfig

    values = dict(
        vocab_size=99,
        d_model=16,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
    )
    values.update(overrides)
    return TransformerConfig(**values)


def perturbed_model(scale: float = 0.1, **overrides):
    """A tiny model (seed 0) whose biases and layer-norm parameters get `scale` * N(0, 1) noise, so that no
    analysis passes by symmetry (zero biases, unit gains)."""
    from modeling import TransformerForConditionalGeneration

    torch.manual_seed(0)
    model = TransformerForConditionalGeneration(tiny_config(**overrides)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.add_(scale * torch.randn_like(p))
    return model


def tokenizer_config(tok) -> dict:
    """The config entries that fit a model to tokenizer `tok`: its vocabulary size and special tokens."""
    return dict(
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.bos_token_id,
    )


@pytest.fixture
def text_model(multi30k_tokenizer):
    """`perturbed_model(0.3)` fitted to `multi30k_tokenizer`, its own translations at most 8 tokens long: an
    analysis of texts rather than ids."""
    model = perturbed_model(0.3, **tokenizer_config(multi30k_tokenizer))
    model.generation_config.max_length = 8
    return model


@pytest.fixture
def config():
    return tiny_config()


@pytest.fixture(scope="session")
def data_dir():
    if not os.path.isfile(os.path.join(DATA_DIR, "train.en.gz")):
        pytest.skip(f"Multi30k not found in {DATA_DIR} (set MULTI30K_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def multi30k_tokenizer(data_dir):
    """A real joint BPE tokenizer (1,000 tokens) trained on 3,000 Multi30k pairs, en+de+fr+cs."""
    from training.data import load_corpus
    from training.tokenizer import train_tokenizer

    texts = []
    for lang in ("de", "fr", "cs"):
        corpus = load_corpus(data_dir, "train", "en", lang)
        texts += corpus.source[:1000] + corpus.target[:3000]
    return train_tokenizer(texts, vocab_size=1000, model_max_length=64)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, data_dir):
    """The tiny training run of tiny_run.py, trained and exported once per session (test_training_*.py)."""
    from tiny_run import shared_tiny_run

    return shared_tiny_run(tmp_path_factory, data_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, multi30k_tokenizer):
    """A saved (untrained) model folder with tokenizer and remote code, loadable like a Hub repository."""
    import modeling  # noqa: F401
    from modeling import TransformerForConditionalGeneration

    torch.manual_seed(0)
    cfg = tiny_config(d_model=32, max_position_embeddings=128, **tokenizer_config(multi30k_tokenizer))
    model = TransformerForConditionalGeneration(cfg).eval()
    model.generation_config.max_length = 32
    path = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(path)
    multi30k_tokenizer.save_pretrained(path)
    return str(path)


# --- the Space's servers and the real browser (tests/test_space_*.py) ------------------------------------
CHROMIUM = "/usr/bin/chromium"  # Debian's package (.ci/run installs it); Playwright's own download fails here
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Playwright, one per test module; skipped (saying why) where it is missing."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the Python package) is not installed")
    sync_api.expect.set_options(timeout=60_000)  # generous: a busy CI machine can take seconds per request
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


SPACE = os.path.join(ROOT, "space")
SHIPPED_MODEL = os.path.join(SPACE, "model")
SENTENCE = "The animal didn't cross the street because it was too tired."  # the Space tests' sentence
# The Space test files' `pytestmark`: gradio's queue calls pandas options that pandas 3 deprecates; not this
# project's concern.
GRADIO_WARNINGS = [
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning"),
]


@contextlib.contextmanager
def open_page(browser, url, width=1300, height=1000):
    """A new Chromium page on `url`, closed afterwards. Waits allow 60 s: on 2 cores a Space request can queue
    behind the model's work."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(60_000)
    page.goto(url, wait_until="domcontentloaded")
    try:
        yield page
    finally:
        page.close()


def wait_for_picture(page, selector):
    """Until the component's image has loaded with a real width (scrolled to: Gradio loads images lazily)."""
    page.locator(f"{selector} img").scroll_into_view_if_needed()
    page.wait_for_function(
        "sel => { const img = document.querySelector(sel + ' img');"
        " return img && img.complete && img.naturalWidth > 0; }",
        arg=selector,
    )


def translate_on_page(page, sentence, translation):
    """Translate `sentence` on the main tab and wait for `translation`."""
    from playwright.sync_api import expect

    page.locator("#src textarea").fill(sentence)
    page.locator("#translate-btn").click()
    expect(page.locator("#translation textarea")).to_have_value(translation)


def open_circuits_tab(page):
    """Open the Circuits tab and wait until it works on the main tab's translation."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Circuits").click()
    expect(page.locator("#circuits-context")).to_contain_text("Working on")


def attribution_on_page(page, client, sentence):
    """On the Circuits tab, split the logit of the translation's second token: the logit shown is the
    `/logit_attribution` API's for `sentence`. Returns the API's answer."""
    from playwright.sync_api import expect

    page.locator("#dla-position input").fill("2")
    page.locator("#dla-btn").click()
    expect(page.locator("#dla-logit")).to_be_visible()
    api = client.predict(sentence, "", 1, api_name="/logit_attribution")
    assert float(page.locator("#dla-logit").get_attribute("data-logit")) == pytest.approx(api["logit"], abs=1e-5)
    return api


def save_readme_picture(page, tmp_path, name, bottoms, top="[role=tablist]", above=4):
    """The README's picture `space/<name>`: the page from `above` px over the top of `top` to 24 px under the
    lowest bottom of the `bottoms` (selectors), full width."""
    y, bottom = page.evaluate(
        """([top, bottoms]) => { const box = sel => document.querySelector(sel).getBoundingClientRect();
                                 return [box(top).top + window.scrollY,
                                         Math.max(...bottoms.map(sel => box(sel).bottom)) + window.scrollY]; }""",
        [top, list(bottoms)],
    )
    y -= above
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True, clip={"x": 0, "y": y, "width": 1300, "height": bottom + 24 - y})
    shutil.copyfile(shot, os.path.join(SPACE, name))


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    """The model a Space test serves: the tiny untrained one, or the shipped one when SAVE_SCREENSHOT asks for
    the README's pictures."""
    if os.environ.get("SAVE_SCREENSHOT") and os.path.isfile(os.path.join(SHIPPED_MODEL, "config.json")):
        return SHIPPED_MODEL
    return tiny_model_dir


@pytest.fixture(scope="module")
def bundle(model_dir):
    from translation_engine import load_bundle

    return load_bundle(model_dir)


@pytest.fixture(scope="module")
def client(server):
    """A gradio_client on the module's own `server` fixture (a URL)."""
    from gradio_client import Client

    return Client(server, verbose=False)


@contextlib.contextmanager
def serve_space(bundle, tabs=None):
    """The Space for `bundle` on a free localhost port (its URL), closed afterwards. `tabs`: as `build_demo`."""
    import app

    demo = app.build_demo(bundle, tabs=tabs)
    port = free_port()
    # demo.launch(...) with a patient localhost self-check (see app.launch): busy CI machines are slow.
    app.launch(
        demo,
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        share=False,
        ssr_mode=False,
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
