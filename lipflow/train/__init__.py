"""Training machinery on autograd: Adam, the NF loss, stability regularisers and
memory-saving gradients (paper Sections 3.3 and 4.2)."""

from lipflow.train.adam import AdamConfig, AdamState, adam_init, adam_update
from lipflow.train.loop import TrainResult, fit
from lipflow.train.losses import bits_per_dim, nf_loss, nf_nll_per_sample, standard_normal_logpdf
from lipflow.train.memory_saving import MemorySavingGradient, gradient_angle, memory_saving_grad, ordinary_grad
from lipflow.train.regularisers import FDRegulariser, NFRegulariser, fd_penalties, unit_directions

__all__ = [
    "AdamConfig",
    "AdamState",
    "FDRegulariser",
    "MemorySavingGradient",
    "NFRegulariser",
    "TrainResult",
    "adam_init",
    "adam_update",
    "bits_per_dim",
    "fd_penalties",
    "fit",
    "gradient_angle",
    "memory_saving_grad",
    "nf_loss",
    "nf_nll_per_sample",
    "ordinary_grad",
    "standard_normal_logpdf",
    "unit_directions",
]
