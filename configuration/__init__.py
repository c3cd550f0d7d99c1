"""`from configuration import TransformerConfig`."""

from .configuration_transformer import TransformerConfig

__all__ = ["TransformerConfig"]
