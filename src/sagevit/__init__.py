"""sagevit: a Vision Transformer trained and served on Amazon SageMaker from one image."""

__version__ = "0.1.0"
