"""Training, evaluation and export of the Transformer on parallel text (Multi30k by default)."""
