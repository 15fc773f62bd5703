"""Object detection: backbones, heads, the Lightning system, evaluation and inference."""
