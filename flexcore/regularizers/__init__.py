"""Loss terms added to the task loss; importing this package registers them in ``REGULARIZERS``."""
from .antialiasing import AntiAliasing, frequency_summaries, layer_frequencies

__all__ = ["AntiAliasing", "frequency_summaries", "layer_frequencies"]
