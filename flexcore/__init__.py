"""flexcore: continuous-kernel convolutional networks (CKConv, FlexConv) as a framework."""
__version__ = "0.2.0"
