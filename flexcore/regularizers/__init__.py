"""Loss terms added to the task loss: ``REGULARIZERS`` entries, ``factory(**hp) -> callable(model) -> scalar``.

Importing this package registers the built-ins. The trainer takes them as
``Trainer.regularizers = {'kernel_norm': @LnLoss}`` (a dict name -> factory, or a list of
factories named after their class); each term is logged as ``reg/<name>``.
"""
from .kernel_norm import LnLoss
