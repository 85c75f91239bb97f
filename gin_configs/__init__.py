"""flexcore's shipped gin files (package data; on gin's include search path)."""
import os

CONFIG_ROOT = os.path.dirname(os.path.abspath(__file__))
