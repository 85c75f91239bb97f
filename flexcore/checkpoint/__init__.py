"""Checkpoints: safe-loading, atomically writing fvcore Checkpointer (nothing model-specific)."""
from .checkpointer import (
    CheckpointError,
    Checkpointer,
    CheckpointMismatchError,
    IncompatibleKeys,
    get_rng_state,
    set_rng_state,
)
