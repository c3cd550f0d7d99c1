"""The Space's optional tabs, each a module with `build(bundle, shared)`; the analyses live in `encdec_lens`."""
