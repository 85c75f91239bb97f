"""Hooks registered in flexcore.registry.HOOKS (filled by the engine issue)."""
