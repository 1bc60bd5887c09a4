"""The model registry, separate so model modules can import it without a cycle."""
from fer_sweep.registry import Registry

MODELS = Registry("model")
register_model = MODELS.register
