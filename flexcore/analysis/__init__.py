"""FLOP / parameter / activation counting (fvcore, extended), profiling, kernel reports."""
from .flops import (
    FlexcoreActivationCountAnalysis,
    FlexcoreFlopCountAnalysis,
    FlopReport,
    UncountedOpsError,
    assert_all_ops_counted,
    count_flops,
    flop_report,
    kernel_generation_flops,
    uncounted_ops,
)
from .handles import CONVENTIONS, FFT_COMPLEX_FLOPS, ZERO_COST_OPS, fft_cost
