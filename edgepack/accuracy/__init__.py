"""Accuracy you can trust: metrics, per-layer quantization error, accuracy-aware fallback."""
