"""Evaluation: generation backends (transformers on CPU, vLLM on GPU) and the eval stage."""
