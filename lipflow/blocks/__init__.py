"""Invertible blocks as pure functions of (params, x), and their composition ``Flow``."""

from lipflow.blocks.base import Block, Params
from lipflow.blocks.conditioners import ACTIVATIONS, MLP, Constant
from lipflow.blocks.coupling import AdditiveCoupling, AffineCoupling
from lipflow.blocks.flow import Flow
from lipflow.blocks.linear import ActNorm, InvertibleLinear, Permutation, Reverse
from lipflow.blocks.residual import FixedPointInfo, Residual
from lipflow.blocks.scales import Bounded, Exp, Identity, Scale, Sigmoid, SoftClamp
from lipflow.blocks.serialise import load_flow, save_flow

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "Block",
    "Bounded",
    "Constant",
    "Exp",
    "FixedPointInfo",
    "Flow",
    "Identity",
    "InvertibleLinear",
    "Params",
    "Permutation",
    "Residual",
    "Reverse",
    "Scale",
    "Sigmoid",
    "SoftClamp",
    "load_flow",
    "save_flow",
]
