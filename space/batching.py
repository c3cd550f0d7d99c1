"""Concurrent translations served together: one `generate()` call for every request waiting at that moment.

`GenerateBatcher.generate(ids, num_beams, max_new_tokens)` blocks the calling thread (a Gradio worker) until
its translation is done. One worker thread per model takes every request waiting in the queue (at most
`max_sentences`), groups them by decoding settings and runs one padded `generate()` per group. A lone request
runs at once (nothing waits for a batch to fill); under load, the requests that arrive while one batch runs
form the next, so the work per request shrinks as the load grows.

Padding changes no translation beyond float rounding: the sources are padded on the right and masked
(`attention_mask`), and each sentence's beams are searched apart from the others'. A padded batch sums in
another order than a lone sentence (its matrices have other shapes), so logits differ in the last bits; where
two next tokens are within that of each other (a degenerate, repetitive output) the pick may differ, as in any
batched server. `tests/test_space_batching.py` checks that ordinary sentences come out exactly as translated
one at a time.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field


@dataclass
class _Request:
    input_ids: list[int]
    settings: tuple[int, int]  # (num_beams, max_new_tokens): only requests with equal settings share a call
    done: threading.Event = field(default_factory=threading.Event)
    output: list[int] | None = None
    error: BaseException | None = None


class GenerateBatcher:
    """Groups concurrent `generate` requests for one model into batched calls (see the module's docstring).

    `generation_config_for(num_beams, max_new_tokens)` gives the decoding of a group; `pad_token_id` pads
    the shorter sources. The worker thread starts with the first request and lives as long as the process.
    """

    def __init__(self, model, generation_config_for, pad_token_id: int, max_sentences: int = 16):
        self.model = model
        self.generation_config_for = generation_config_for
        self.pad_token_id = pad_token_id
        self.max_sentences = max_sentences
        self._queue: queue.Queue[_Request] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batch_sizes: list[int] = []  # the size of every `generate` call so far (bounded: the last 1000)

    def generate(self, input_ids: list[int], num_beams: int, max_new_tokens: int) -> list[int]:
        """The generated row for one source (`<start> y_1 .. </s>`, maybe padded), as `generate()` gives it."""
        request = _Request(list(input_ids), (int(num_beams), int(max_new_tokens)))
        self._ensure_worker()
        self._queue.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.output

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._serve, name="generate-batcher", daemon=True)
                self._worker.start()

    def _serve(self) -> None:
        while True:
            waiting = [self._queue.get()]
            while len(waiting) < self.max_sentences:
                try:
                    waiting.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for group in _by_settings(waiting):
                self._run(group)

    def _run(self, group: list[_Request]) -> None:
        try:
            rows = self._generate_padded([r.input_ids for r in group], *group[0].settings)
            for request, row in zip(group, rows):
                request.output = row
        except BaseException as err:  # noqa: BLE001 - handed to every waiting caller, who raises it
            for request in group:
                request.error = err
        finally:
            self.batch_sizes = self.batch_sizes[-999:] + [len(group)]
            for request in group:
                request.done.set()

    def _generate_padded(self, sources: list[list[int]], num_beams: int, max_new_tokens: int) -> list[list[int]]:
        import torch

        width = max(len(ids) for ids in sources)
        device = next(self.model.parameters()).device
        ids = torch.full((len(sources), width), self.pad_token_id, dtype=torch.long, device=device)
        mask = torch.zeros((len(sources), width), dtype=torch.long, device=device)
        for row, source in enumerate(sources):
            ids[row, :len(source)] = torch.tensor(source, dtype=torch.long)
            mask[row, :len(source)] = 1
        with torch.inference_mode():
            generated = self.model.generate(input_ids=ids, attention_mask=mask,
                                            generation_config=self.generation_config_for(num_beams, max_new_tokens))
        return generated.tolist()


def _by_settings(requests: list[_Request]) -> list[list[_Request]]:
    """The requests grouped by decoding settings, in order of arrival."""
    groups: dict[tuple[int, int], list[_Request]] = {}
    for request in requests:
        groups.setdefault(request.settings, []).append(request)
    return list(groups.values())


__all__ = ["GenerateBatcher"]
