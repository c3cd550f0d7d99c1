"""The Space's "Heads" tab: the head atlas that `python -m training.head_atlas` writes into a model folder.

The atlas is computed for real, by the command, on a copy of the untrained `tiny_model_dir` model over the
first validation sentences (fast); the tab is checked against that JSON, and in a real browser.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import GRADIO_WARNINGS, ROOT, SHIPPED_MODEL, open_page, save_readme_picture, serve_space, wait_for_picture

from tabs import heads_tab as tab

SENTENCES = 12
pytestmark = GRADIO_WARNINGS


@pytest.fixture(scope="module")
def atlas_dir(tiny_model_dir, tmp_path_factory, data_dir):
    if os.environ.get("SAVE_SCREENSHOT") and os.path.isfile(os.path.join(SHIPPED_MODEL, tab.ATLAS_FILE)):
        return SHIPPED_MODEL  # the README's picture: the shipped model's own atlas
    folder = tmp_path_factory.mktemp("atlas") / "model"
    shutil.copytree(tiny_model_dir, folder)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.head_atlas",
            str(folder),
            "--data",
            data_dir,
            "--max-sentences",
            str(SENTENCES),
            "--steps",
            "4",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return str(folder)


@pytest.fixture(scope="module")
def bundle(atlas_dir):
    from translation_engine import load_bundle

    return load_bundle(atlas_dir)


@pytest.fixture(scope="module")
def atlas(atlas_dir):
    with open(os.path.join(atlas_dir, tab.ATLAS_FILE), encoding="utf-8") as fh:
        return json.load(fh)


def test_the_grid_has_one_cell_per_head_with_its_roles_and_rank(bundle, atlas):
    html = tab.grid_html(bundle, tab.load_atlas(bundle))
    assert html.count('data-head="') == len(atlas["heads"])
    for record in atlas["heads"]:
        cell = html.split(f'data-head="{record["name"]}"', 1)[1].split("</td>", 1)[0]
        assert f">#{record['importance_rank']}<" in cell
        assert tab.role_codes(record) in cell
    ranks = sorted(record["importance_rank"] for record in atlas["heads"])
    assert ranks == list(range(1, len(atlas["heads"]) + 1))


def test_a_heads_card_gives_its_numbers_and_an_example_map(bundle, atlas):
    record = max(atlas["heads"], key=lambda r: r["importance"])
    card, picture = tab.head_outputs(bundle, record["name"])
    assert f'data-importance="{record["importance"]!r}"' in card
    assert f"rank {record['importance_rank']} of {len(atlas['heads'])}" in card
    assert f"pruned {tab.ordinal(record['pruning_order']['family'])} in its family" in card
    assert picture.ndim == 3 and picture.shape[2] == 3
    assert "is not a head of this model" in tab.card_html(atlas, "cross L9 H9")


def test_a_model_without_an_atlas_says_how_to_make_one(tiny_model_dir):
    from translation_engine import load_bundle

    bundle = load_bundle(tiny_model_dir)
    assert tab.load_atlas(bundle) is None
    card, picture = tab.head_outputs(bundle, "enc L1 H1")
    assert "python -m training.head_atlas" in card and picture is None


def test_an_atlas_of_another_model_is_refused(bundle, atlas_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(atlas_dir, folder)
    path = folder / tab.ATLAS_FILE
    data = json.loads(path.read_text())
    data["heads"] = [r for r in data["heads"] if r["name"] != "cross L2 H1"]
    path.write_text(json.dumps(data))
    from translation_engine import load_bundle

    with pytest.raises(ValueError, match="does not describe this model: it has no record for cross L2 H1"):
        tab.load_atlas(load_bundle(str(folder)))


@pytest.fixture(scope="module")
def server(bundle):
    with serve_space(bundle, tabs=[tab]) as url:
        yield url


@pytest.mark.browser
def test_browser_click_a_head_for_its_card(browser, server, atlas, tmp_path):
    from playwright.sync_api import expect

    with open_page(browser, server) as page:
        page.get_by_role("tab", name="Heads").click()
        cells = page.locator("#atlas-grid td[data-head]")
        expect(cells).to_have_count(len(atlas["heads"]))
        record = next(r for r in atlas["heads"] if r["family"] == "cross")
        page.locator(f'#atlas-grid td[data-head="{record["name"]}"]').click()
        expect(page.locator("#head-card")).to_have_attribute("data-name", record["name"])
        shown = float(page.locator("#head-importance").get_attribute("data-importance"))
        assert shown == pytest.approx(record["importance"], abs=1e-12)
        page.locator("#head-example img").wait_for()
        expect(page.locator("#atlas-pruning img")).to_have_count(1)
        if os.environ.get("SAVE_SCREENSHOT"):
            wait_for_picture(page, "#head-example")
            save_readme_picture(page, tmp_path, "screenshot_heads.png", ["#head-card-view", "#head-example"])
