"""ssmworld: model-based reinforcement learning with state-space-model world models."""

__version__ = "0.1.0"
