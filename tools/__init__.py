"""Model building, quantization, threshold tuning and benchmarks (the `tools` extra)."""
