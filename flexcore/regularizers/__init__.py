"""Loss terms added to the task loss: ``REGULARIZERS`` entries, ``factory(**hp) -> callable(model) -> scalar``.

Importing this package registers the built-ins. The trainer takes them as
``Solver.regularizers = {'kernel_norm': @LnLoss, 'antialiasing': @AntiAliasing}`` (a dict
name -> factory, or a list of factories named after their class); each term is logged as
``reg/<name>``.
"""
from .antialiasing import AntiAliasing, frequency_summaries, layer_frequencies
from .kernel_norm import LnLoss

__all__ = ["AntiAliasing", "LnLoss", "frequency_summaries", "layer_frequencies"]
