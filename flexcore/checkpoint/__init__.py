"""Checkpoints: safe-loading, atomically writing fvcore Checkpointer; original-checkpoint converter."""
from .checkpointer import (
    CheckpointError,
    Checkpointer,
    CheckpointMismatchError,
    IncompatibleKeys,
    get_rng_state,
    set_rng_state,
)
