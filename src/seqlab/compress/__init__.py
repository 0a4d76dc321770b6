"""Model compression: pruning (`prune`) and int8 quantization (`quantize`) of trained runs."""
