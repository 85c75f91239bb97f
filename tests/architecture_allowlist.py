"""Violations of tests/test_architecture.py that exist today, one set per rule.

A ratchet: the test fails on a violation missing here and on an entry here that no longer
occurs, so the sets only shrink. Regenerate after moving code:
    python tests/test_architecture.py --write
"""

# imports that go up the layer order
UPWARD_IMPORTS = {
}

# import cycles (strongly connected module groups)
IMPORT_CYCLES = {
}

# files over 500 lines, functions over 80
OVERSIZED = {
}

# `except ImportError` around flexcore imports
IMPORT_ERROR_FALLBACKS = {
}
