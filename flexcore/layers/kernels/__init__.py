"""TODO(owner): filled by its issue."""
