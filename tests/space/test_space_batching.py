"""Concurrent translations are served together (one padded `generate()` call) and come out exactly as the same
sentences translated one at a time, with the shipped model, greedy and with the model's beam search.

A degenerate input (one phrase repeated past the model's token limit) makes a repetitive output whose next
tokens are near-ties, where the last bits a padded batch changes may pick another token (CI saw it after 30
tokens): for it the tests ask for the same truncation notice and a translation, not the same one."""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import GRADIO_WARNINGS, SENTENCE, SHIPPED_MODEL, serve_space

pytestmark = GRADIO_WARNINGS

SENTENCES = [
    SENTENCE,
    "Two dogs play in the snow.",
    "A man in a blue shirt is standing on a ladder cleaning windows.",
    "A dog.",
    "Two young children are playing with a ball in the park.",
    "A woman in a red dress is walking her dog along the beach while two men sit on a bench and read.",
    "People sit at a table.",
    "A group of people are sitting at a table in a busy restaurant.",
    "An old man with a white beard plays the guitar on a street corner.",
    "Ein Mann in einem blauen Hemd steht auf einer Leiter.",
    "A girl in a pink jacket jumps into a pile of leaves.",
]
TOO_LONG = "a dog runs on the grass " * 30  # longer than the model reads: cut to its token limit


@pytest.fixture(scope="module")
def shipped():
    if not os.path.isfile(os.path.join(SHIPPED_MODEL, "config.json")):
        pytest.skip(f"no shipped model in {SHIPPED_MODEL}")
    from translation_engine import load_bundle

    return load_bundle(SHIPPED_MODEL)


def all_at_once(translate, sentences):
    """`translate(sentence)` for every sentence, each on its own thread, all released together."""
    start = threading.Barrier(len(sentences))

    def one(sentence):
        start.wait()
        return translate(sentence)

    with ThreadPoolExecutor(len(sentences)) as pool:
        return list(pool.map(one, sentences))


@pytest.mark.parametrize("num_beams", [1, None], ids=["greedy", "model's beam search"])
def test_concurrent_translations_equal_one_at_a_time(shipped, num_beams):
    sentences = SENTENCES + [TOO_LONG]
    alone = [shipped.translate(s, num_beams, with_attention=False) for s in sentences]
    calls_before = len(shipped.batcher.batch_sizes)
    together = all_at_once(lambda s: shipped.translate(s, num_beams, with_attention=False), sentences)
    assert [t.text for t in together[:-1]] == [t.text for t in alone[:-1]]
    assert [t.decoder_ids for t in together[:-1]] == [t.decoder_ids for t in alone[:-1]]
    assert [t.notices for t in together] == [t.notices for t in alone]
    assert alone[-1].notices and together[-1].text  # the long one was cut, said so, and translated
    assert max(shipped.batcher.batch_sizes[calls_before:]) > 1  # they were served together
    assert len(shipped.batcher.batch_sizes) - calls_before < len(SENTENCES)


def test_concurrent_requests_with_different_settings_keep_their_own(shipped):
    settings = [(1, 64), (None, 64), (1, 5), (3, 20)] * 3
    requests = list(zip(SENTENCES, settings))
    alone = [shipped.translate(s, beams, new, with_attention=False).text for s, (beams, new) in requests]
    together = all_at_once(lambda r: shipped.translate(r[0], *r[1], with_attention=False).text, requests)
    assert together == alone


def test_concurrent_api_clients_get_the_translations_of_single_requests(shipped):
    """Through the real server: 12 gradio_client clients at once, as the Translate button's API."""
    from gradio_client import Client

    alone = [shipped.translate(s).text for s in SENTENCES]
    with serve_space(shipped, tabs=[]) as url:
        clients = [Client(url, verbose=False) for _ in SENTENCES]
        calls_before = len(shipped.batcher.batch_sizes)
        answers = all_at_once(
            lambda pair: pair[0].predict(pair[1], api_name="/translate")[0], list(zip(clients, SENTENCES))
        )
    assert answers == alone
    assert max(shipped.batcher.batch_sizes[calls_before:]) > 1
