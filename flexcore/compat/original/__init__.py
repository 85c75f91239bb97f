"""The original FlexConv code (rjbruin/flexconv): its checkpoints and configs in flexcore terms.

- :mod:`.weights`: rename the original's state dicts to flexcore's names, per component.
- :mod:`.spec`: which flexcore model matches an original model (from its config or weights).
- :mod:`.convert`: the ``tools/convert_checkpoint.py`` / ``flexcore-convert-checkpoint`` command.

See docs/checkpoints-original.md.
"""
