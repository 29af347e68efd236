"""Layers and distributions shared by world models and actor-critics, and the device check behind agent.precision."""

from .conv import ImageDecoder, ImageEncoder
from .distributions import Bernoulli, BoundedNormal, CategoricalLatent, TwoHot, symexp, symlog
from .layers import MLP, RunningNorm, dense_block, eval_mode, frozen_parameters
from .precision import bfloat16_is_native

__all__ = ["MLP", "Bernoulli", "BoundedNormal", "CategoricalLatent", "ImageDecoder", "ImageEncoder", "RunningNorm",
           "TwoHot", "bfloat16_is_native", "dense_block", "eval_mode", "frozen_parameters", "symexp", "symlog"]
