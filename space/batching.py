"""Concurrent translations served together: one decoding call for every request waiting at that moment.

`RequestBatcher.generate(ids, num_beams, max_new_tokens)` blocks the calling thread (a Gradio worker) until
its translation is done. One worker thread per model takes every request waiting in the queue (at most
`max_sentences`), groups them by decoding settings and decodes each group in one call. A lone request runs at
once (nothing waits for a batch to fill); under load, the requests that arrive while one batch runs form the
next, so the work per request shrinks as the load grows. Two engines decode a group:

- `GenerateBatcher`: the PyTorch model's padded `generate()`;
- `CTranslate2Batcher`: the same model converted to CTranslate2 (`training.export_marian --ctranslate2`), whose
  fused CPU kernels decode several times faster; in float32 it searches as `generate()` does.

Padding changes no translation beyond float rounding: the sources are padded on the right and masked
(`attention_mask`), and each sentence's beams are searched apart from the others'. A padded batch sums in
another order than a lone sentence (its matrices have other shapes), so logits differ in the last bits; where
two next tokens are within that of each other (a degenerate, repetitive output) the pick may differ, as in any
batched server. `tests/space/test_space_batching.py` checks that ordinary sentences come out exactly as translated
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


class RequestBatcher:
    """Groups concurrent translation requests for one model into batched decoding calls (see the module's
    docstring). A subclass says how to decode a group: `decode(sources, num_beams, max_new_tokens)` returns, for
    each source's ids, the generated row `<start> y_1 .. </s>` (maybe padded) as `generate()` gives it.

    The worker thread starts with the first request and lives as long as the process.
    """

    engine = ""  # what decodes, in words for the UI

    def __init__(self, max_sentences: int = 16):
        self.max_sentences = max_sentences
        self._queue: queue.Queue[_Request] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batch_sizes: list[int] = []  # the size of every decoding call so far (bounded: the last 1000)

    def decode(self, sources: list[list[int]], num_beams: int, max_new_tokens: int) -> list[list[int]]:
        raise NotImplementedError

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
            rows = self.decode([r.input_ids for r in group], *group[0].settings)
            for request, row in zip(group, rows):
                request.output = row
        except BaseException as err:  # noqa: BLE001 - handed to every waiting caller, who raises it
            for request in group:
                request.error = err
        finally:
            self.batch_sizes = self.batch_sizes[-999:] + [len(group)]
            for request in group:
                request.done.set()


class GenerateBatcher(RequestBatcher):
    """Decodes with the PyTorch model's `generate()`, the sources padded with `pad_token_id` and masked;
    `generation_config_for(num_beams, max_new_tokens)` gives the decoding of a group."""

    engine = "PyTorch generate()"

    def __init__(self, model, generation_config_for, pad_token_id: int, max_sentences: int = 16):
        super().__init__(max_sentences)
        self.model = model
        self.generation_config_for = generation_config_for
        self.pad_token_id = pad_token_id

    def decode(self, sources: list[list[int]], num_beams: int, max_new_tokens: int) -> list[list[int]]:
        import torch

        width = max(len(ids) for ids in sources)
        device = next(self.model.parameters()).device
        ids = torch.full((len(sources), width), self.pad_token_id, dtype=torch.long, device=device)
        mask = torch.zeros((len(sources), width), dtype=torch.long, device=device)
        for row, source in enumerate(sources):
            ids[row, : len(source)] = torch.tensor(source, dtype=torch.long)
            mask[row, : len(source)] = 1
        with torch.inference_mode():
            generated = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                generation_config=self.generation_config_for(num_beams, max_new_tokens),
            )
        return generated.tolist()


class CTranslate2Batcher(RequestBatcher):
    """Decodes with a `ctranslate2.Translator` of the same model. CTranslate2 reads token strings: the ids go
    through `tokenizer`'s vocabulary, which the converted model shares. `generation_config_for` gives the length
    penalty of beam search; `decoder_start_token_id` starts each row, as in `generate()`'s output."""

    engine = "CTranslate2"

    def __init__(
        self, translator, tokenizer, generation_config_for, decoder_start_token_id: int, max_sentences: int = 16
    ):
        super().__init__(max_sentences)
        self.translator = translator
        self.tokenizer = tokenizer
        self.generation_config_for = generation_config_for
        self.decoder_start_token_id = decoder_start_token_id

    def decode(self, sources: list[list[int]], num_beams: int, max_new_tokens: int) -> list[list[int]]:
        penalty = self.generation_config_for(num_beams, max_new_tokens).length_penalty
        results = self.translator.translate_batch(
            [self.tokenizer.convert_ids_to_tokens(ids) for ids in sources],
            beam_size=num_beams,
            # generate()'s length penalty divides by the length with the end token; so does CTranslate2's here
            length_penalty=1.0 if penalty is None else float(penalty),
            max_decoding_length=max_new_tokens,
            return_end_token=True,
        )
        return [[self.decoder_start_token_id, *self.tokenizer.convert_tokens_to_ids(r.hypotheses[0])] for r in results]


def _by_settings(requests: list[_Request]) -> list[list[_Request]]:
    """The requests grouped by decoding settings, in order of arrival."""
    groups: dict[tuple[int, int], list[_Request]] = {}
    for request in requests:
        groups.setdefault(request.settings, []).append(request)
    return list(groups.values())


__all__ = ["CTranslate2Batcher", "GenerateBatcher", "RequestBatcher"]
