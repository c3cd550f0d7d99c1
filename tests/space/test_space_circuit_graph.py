"""The Space's "Circuit graph" tab: edge attribution on a clean/corrupted pair, its API and the page in Chromium.

Served with the shipped model (space/model), whose translations of the two sentences differ at one word, so
the default target position exists; skipped where that model is not there.
"""

import os
import re
import shutil

import pytest

from conftest import CHROMIUM, GRADIO_WARNINGS, SHIPPED_MODEL, SPACE, open_page, serve_space
from encdec_lens.circuit_discovery import EdgeGraph
from encdec_lens.heads import grid_shape

pytestmark = GRADIO_WARNINGS

CLEAN = "A man in a blue shirt is standing on a ladder."
CORRUPTED = "A man in a red shirt is standing on a ladder."  # same 12 tokens; "blauen" -> "roten"


@pytest.fixture(scope="module")
def tab():
    from tabs import circuit_graph_tab

    return circuit_graph_tab


@pytest.fixture(scope="module")
def bundle():
    from translation_engine import load_bundle

    if not os.path.isfile(os.path.join(SHIPPED_MODEL, "model.safetensors")):
        pytest.skip(f"the shipped model is not in {SHIPPED_MODEL}")
    return load_bundle(SHIPPED_MODEL)


@pytest.fixture(scope="module")
def result(tab, bundle):
    return tab.analyse(bundle, CLEAN, CORRUPTED)


# --- the analysis and the picture ------------------------------------------------------------------------------
def test_default_target_is_the_first_difference_and_the_full_circuit_is_faithful(tab, bundle, result):
    assert result["clean_translation_tokens"][result["position"]] == result["target"]["token"] == "▁blauen"
    assert result["corrupted_translation_tokens"][result["position"]] == result["contrast"]["token"] == "▁roten"
    assert (
        result["clean_translation_tokens"][: result["position"]]
        == result["corrupted_translation_tokens"][: result["position"]]
    )
    assert result["method"] == "eap-ig" and result["steps"] == 5
    assert result["clean_metric"] > 0 > result["corrupted_metric"]
    curve = result["curve"]
    assert len(curve["ks"]) == 20 and curve["ks"][0] == 1 and curve["ks"][-1] == result["num_edges"]
    assert curve["ks"] == sorted(set(curve["ks"]))
    assert curve["faithfulness"][-1] == pytest.approx(1.0, abs=1e-4)
    assert result["smallest_k"] == min(k for k, f in zip(curve["ks"], curve["faithfulness"]) if f >= 0.8)
    edges = result["edges"]
    assert len(edges) == result["num_edges"] == len(EdgeGraph(bundle.model))
    assert [e["rank"] for e in edges] == list(range(1, len(edges) + 1))
    assert all(abs(a["score"]) >= abs(b["score"]) for a, b in zip(edges, edges[1:]))
    assert {e["input"] for e in edges} == {"in", "q", "kv"}
    kv = [e for e in edges if e["input"] == "kv"]
    assert all(e["upstream"].startswith("enc ") and e["downstream"].startswith("cross ") for e in kv)


def test_a_target_and_contrast_can_be_typed(tab, bundle):
    typed = tab.analyse(bundle, CLEAN, CORRUPTED, target="Mann", contrast="▁Frau", position=1, method="eap")
    assert (typed["target"]["token"], typed["contrast"]["token"], typed["position"]) == ("▁Mann", "▁Frau", 1)
    assert typed["method"] == "eap" and typed["curve"]["faithfulness"][-1] == pytest.approx(1.0, abs=1e-4)


def test_the_picture_has_the_three_families_and_the_slider_redraws_it(tab, bundle, result):
    summary, slider, readout, graph, state = tab.analysis_outputs(bundle, CLEAN, CORRUPTED, "", "", None, "eap-ig", 5)
    assert state["curve"] == result["curve"] and slider["maximum"] == 20
    step = slider["value"]
    assert result["curve"]["ks"][step - 1] == result["smallest_k"]
    for family in ("encoder", "decoder", "cross"):
        layers, heads = grid_shape(bundle.model, family)
        assert graph.count(f'class="node fam-{family}') == layers * heads
    assert graph.count('<path class="edge') == result["smallest_k"]
    top = result["edges"][0]
    title = f"<title>{top['edge'].replace('>', '&gt;')}: score {top['score']:+.4g}, rank 1 of {result['num_edges']}"
    assert title in graph
    assert f'data-faithfulness="{result["curve"]["faithfulness"][step - 1]!r}"' in readout
    assert "▁blauen" in summary and "▁roten" in summary
    readout_all, graph_all = tab.slider_outputs(state, 20)
    assert graph_all.count('<path class="edge') == result["num_edges"]
    assert "faithfulness" in readout_all and readout_all != readout
    readout_one, graph_one = tab.slider_outputs(state, 1)
    assert graph_one.count('<path class="edge') == 1 and 'data-rank="1"' in graph_one


def test_bad_input_says_what_to_do(tab, bundle):
    cases = [
        (("A man.", CORRUPTED), "same number of tokens"),
        ((CLEAN, "  "), "Type the corrupted sentence"),
        (("", CORRUPTED), "box is empty"),
        ((CLEAN, CLEAN), "translates both sentences the same way"),
        ((CLEAN, CORRUPTED, "Haus Boot"), "it must be one: a word the model reads as one token"),
        ((CLEAN, CORRUPTED, "Mann", "Mann"), "the same token"),
        ((CLEAN, CORRUPTED, "", "", 99), "Position 99 does not exist"),
        ((CLEAN, CORRUPTED, "", "", None, "gradient"), "Unknown method"),
        ((CLEAN, CORRUPTED, "", "", None, "eap-ig", 0), "steps must be from 1 to 20"),
    ]
    for args, message in cases:
        with pytest.raises(tab.CircuitsInputError, match=message):
            tab.analyse(bundle, *args)
    summary, *_ = tab.analysis_outputs(bundle, CLEAN, "A red one.", "", "", None, "eap-ig", 5)
    assert "same number of tokens" in summary and "Pick a corrupted sentence" in summary
    summary, *_ = tab.analysis_outputs(bundle, CLEAN, CORRUPTED, "", "", 13, "eap-ig", 5)
    assert "Position 13 does not exist" in summary and "(1..12 with the final &lt;/s&gt;" in summary  # from 1
    assert tab.analysis_outputs(bundle, CLEAN, CORRUPTED, "", "", 0, "eap-ig", 5)[-1]["position"] == 4  # 0: default
    assert tab.analysis_outputs(bundle, CLEAN, CORRUPTED, "", "▁roten", 5, "eap-ig", 5)[-1]["position"] == 4
    nasty = '<img src=x onerror="alert(1)"> ${x}'
    summary, *_ = tab.analysis_outputs(bundle, CLEAN, CORRUPTED, nasty, "", None, "eap-ig", 5)
    assert "<img" not in summary and "${" not in summary


def test_k_grid_and_first_difference(tab):
    assert tab.k_grid(5) == [1, 2, 3, 4, 5]
    grid = tab.k_grid(1177)
    assert len(grid) == 20 and grid[0] == 1 and grid[-1] == 1177 and grid == sorted(set(grid))
    assert tab.first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert tab.first_difference([1, 2, 3], [1, 2, 3]) is None
    assert tab.first_difference([1, 2], [1, 2, 3]) == 2


# --- the API through a running server ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tab, bundle):
    with serve_space(bundle, tabs=[tab]) as url:
        yield url


def test_api_returns_the_graph_and_its_curve(client, result):
    answer = client.predict(CLEAN, CORRUPTED, api_name="/circuit_graph")
    assert answer["num_edges"] == len(answer["edges"]) == result["num_edges"]
    assert answer["curve"]["ks"][-1] == answer["num_edges"]
    assert answer["curve"]["faithfulness"][-1] == pytest.approx(1.0, abs=1e-4)
    assert answer["smallest_k"] == result["smallest_k"] and answer["position"] == result["position"]
    assert [e["edge"] for e in answer["edges"][:10]] == [e["edge"] for e in result["edges"][:10]]
    assert answer["edges"][0]["score"] == pytest.approx(result["edges"][0]["score"], rel=1e-5)
    assert {"edge", "upstream", "downstream", "input", "score", "rank"} == set(answer["edges"][0])
    eap = client.predict(CLEAN, CORRUPTED, "", "", None, "eap", 1, api_name="/circuit_graph")
    assert eap["method"] == "eap" and eap["curve"]["faithfulness"][-1] == pytest.approx(1.0, abs=1e-4)


def test_api_bad_input_gets_a_clear_message_not_a_traceback(client, capsys):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="same number of tokens.*Pick a corrupted sentence"):
        client.predict(CLEAN, "A red one.", api_name="/circuit_graph")
    with pytest.raises(AppError, match="translates both sentences the same way"):
        client.predict(CLEAN, CLEAN, api_name="/circuit_graph")
    wrong = [
        ((CLEAN, CORRUPTED, "", "", None, "eap-ig", "five"), 'steps must be a whole number from 1 to 20; got "five".'),
        (
            (CLEAN, CORRUPTED, "", "", "last"),
            'position must be a whole number (0-based, -1 = the last) or null; got "last".',
        ),
        ((CLEAN, 5), "corrupted must be a string; got 5."),
        ((CLEAN, CORRUPTED, ["Mann"]), 'target must be a string; got ["Mann"].'),
    ]
    for args, message in wrong:
        with pytest.raises(AppError, match=f"^{re.escape(message)}$"):
            client.predict(*args, api_name="/circuit_graph")
    assert "Traceback" not in capsys.readouterr().err


# --- a real browser ----------------------------------------------------------------------------------------------
@pytest.mark.browser
def test_browser_draws_the_graph_and_the_slider_changes_the_circuit(browser, server, result, tmp_path):
    from playwright.sync_api import expect

    assert os.path.exists(CHROMIUM)
    with open_page(browser, server, width=1300, height=1200) as page:
        page.get_by_role("tab", name="Circuit graph").click()
        page.locator("#cg-clean textarea").fill(CLEAN)
        page.locator("#cg-corrupted textarea").fill(CORRUPTED)
        page.locator("#cg-btn").click()
        expect(page.locator("#cg-graph svg#cg-svg")).to_be_visible()
        expect(page.locator("#cg-summary")).to_contain_text("▁roten")
        for family in ("encoder", "decoder", "cross"):
            assert page.locator(f"#cg-graph svg .node.fam-{family}").count() == 16
        edges = page.locator("#cg-graph svg path.edge")
        expect(edges).to_have_count(result["smallest_k"])
        faith = page.locator("#cg-faith")
        before = faith.inner_text()
        step = result["curve"]["ks"].index(result["smallest_k"]) + 1
        assert float(faith.get_attribute("data-faithfulness")) == pytest.approx(
            result["curve"]["faithfulness"][step - 1], abs=1e-6
        )

        number = page.locator("#cg-k input[type=number]")
        number.fill("1")
        number.press("Enter")
        expect(page.locator("#cg-k-value")).to_have_text("1")
        expect(edges).to_have_count(1)
        assert faith.inner_text() != before
        assert float(faith.get_attribute("data-faithfulness")) == pytest.approx(
            result["curve"]["faithfulness"][0], abs=1e-6
        )

        edges.first.click()  # its numbers below the picture
        expect(page.locator("#cg-detail")).to_contain_text("rank 1 of")
        page.locator("#cg-graph svg .node.fam-cross").first.click()
        expect(page.locator("#cg-detail")).to_contain_text("cross L1 H1:")
        page.screenshot(path=str(tmp_path / "circuit_graph.png"), full_page=True)
        assert (tmp_path / "circuit_graph.png").stat().st_size > 10_000
        if os.environ.get("SAVE_SCREENSHOT"):  # a picture for the README
            shutil.copyfile(tmp_path / "circuit_graph.png", os.path.join(SPACE, "screenshot_circuit_graph.png"))
