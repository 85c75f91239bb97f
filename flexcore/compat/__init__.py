"""Compatibility with other code bases: reading what they saved, in flexcore's terms."""
