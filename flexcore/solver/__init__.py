"""Optimisers, parameter groups and learning-rate schedules.

Importing this package registers the built-ins in ``OPTIMIZERS`` and ``LR_SCHEDULES``.
"""
from .optimizers import SGD, Adam, AdamW, RMSprop, apply_lr_factors
from .param_groups import NORM_TYPES, build_param_groups, mask_types
from .schedules import Constant, Cosine, Exponential, MultiStep, Plateau, Schedule
