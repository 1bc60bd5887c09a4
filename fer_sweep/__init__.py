"""fer_sweep: reproducible facial-expression-recognition experiments on FER2013 with Hydra and PyTorch."""

__version__ = "0.1.0"
