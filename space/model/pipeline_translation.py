"""`pipeline("translation", model=<this folder>, trust_remote_code=True)` for vanilla-transformer models.

A translation task that does not rely on transformers shipping one: this custom pipeline, shipped beside the
model and declared under `custom_pipelines` in config.json, has the usual call and output shape:

    translator = pipeline("translation", model="path/or/hub-id", trust_remote_code=True)
    translator("A man is riding a bike.", num_beams=4)          # [{"translation_text": "..."}]
    translator(["...", "", "..."], batch_size=16, max_new_tokens=64)  # an empty text gives ""

Only torch and transformers are imported, so it runs where the project is not installed.
"""

from transformers import Pipeline


class TranslationPipeline(Pipeline):
    """Text in, `[{"translation_text": ...}]` out; generation keywords (num_beams, max_new_tokens, ...) pass through."""

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def _sanitize_parameters(
        self, truncation=True, max_length=None, clean_up_tokenization_spaces=False, **generate_kwargs
    ):
        preprocess = {"truncation": truncation}
        if max_length is not None:
            preprocess["max_length"] = max_length
        return preprocess, generate_kwargs, {"clean_up_tokenization_spaces": clean_up_tokenization_spaces}

    def __call__(self, inputs, **kwargs):
        if isinstance(inputs, str):
            return [self([inputs], **kwargs)[0]]  # [{"translation_text": ...}], as the built-in task gave
        if not (isinstance(inputs, (list, tuple)) and all(isinstance(x, str) for x in inputs)):
            raise TypeError(f"translation expects a string or a list of strings, got {type(inputs).__name__}.")
        # An empty (or blank) text translates to an empty one; the others go to the model, batched as asked.
        results = [{"translation_text": ""} for _ in inputs]
        todo = [i for i, text in enumerate(inputs) if text.strip()]
        if todo:
            for i, r in zip(todo, super().__call__([inputs[i] for i in todo], **kwargs)):
                results[i] = r[0] if isinstance(r, list) and len(r) == 1 else r
        return results

    def preprocess(self, text, truncation=True, max_length=None):
        max_length = max_length or self.tokenizer.model_max_length
        return self.tokenizer(text, return_tensors="pt", truncation=truncation, max_length=max_length)

    def _forward(self, model_inputs, **generate_kwargs):
        inputs = {k: v for k, v in model_inputs.items() if k in ("input_ids", "attention_mask")}
        return {"output_ids": self.model.generate(**inputs, **generate_kwargs)}

    def postprocess(self, model_outputs, clean_up_tokenization_spaces=False):
        texts = self.tokenizer.batch_decode(
            model_outputs["output_ids"],
            skip_special_tokens=True,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
        )
        return [{"translation_text": t.strip()} for t in texts]
