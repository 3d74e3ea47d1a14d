"""Transcriptional regulation: genes driven by one transcription factor."""

from __future__ import annotations

from typing import Mapping

import torch
from torch.nn.functional import softplus

from .base import ForcePrior, ParameterSpec, register_system
from .ode import ODESystem

__all__ = ["Transcription", "LinearTranscription", "P53_GENES", "P53_GENE_ALIASES", "P53_KINETICS"]

P53_GENES = ("DDB2", "BIK", "DR5", "p21", "SESN1")
"""Target genes of the p53 network, in the order of Barenco et al. (2006)."""

P53_GENE_ALIASES = {
    "DDB2": ("XPE", "UV-DDB2"),
    "BIK": ("NBK", "BP4", "BIP1"),
    "DR5": ("TNFRSF10B", "TRAIL-R2", "TRAILR2", "KILLER", "TRICK2", "CD262"),
    "p21": ("CDKN1A", "CIP1", "WAF1", "p21CIP1", "p21WAF1", "SDI1", "CAP20"),
    "SESN1": ("PA26", "SEST1"),
}
"""Other names of the p53 targets: the HGNC symbol where it differs (TNFRSF10B, CDKN1A), then common names."""

P53_KINETICS = {
    "basal_rate": (0.0649, 0.0069, 0.0181, 0.0033, 0.0869),
    "sensitivity": (0.9075, 0.9748, 0.9785, 1.0, 0.9680),
    "decay_rate": (0.2829, 0.3720, 0.3617, 0.8, 0.3573),
}
"""Published kinetics of the p53 targets (Barenco et al. 2006), per gene, per hour."""

KINETIC_SPREAD = 0.4
"""Tasks draw each gene's kinetics uniformly within +-40% of the published value."""


def _around(values: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return (
        tuple(round(v * (1 - KINETIC_SPREAD), 6) for v in values),
        tuple(round(v * (1 + KINETIC_SPREAD), 6) for v in values),
    )


def _kinetic_parameters() -> tuple[ParameterSpec, ...]:
    low_b, high_b = _around(P53_KINETICS["basal_rate"])
    low_s, high_s = _around(P53_KINETICS["sensitivity"])
    low_d, high_d = _around(P53_KINETICS["decay_rate"])
    return (
        ParameterSpec("basal_rate", "b_j", low_b, high_b, "1/h", "basal transcription rate of gene j", per_output=True),
        ParameterSpec("sensitivity", "s_j", low_s, high_s, "1/h", "sensitivity of gene j to the factor", per_output=True),
        ParameterSpec("decay_rate", "d_j", low_d, high_d, "1/h", "mRNA decay rate of gene j", per_output=True),
    )


@register_system
class Transcription(ODESystem):
    """Genes ``j`` transcribed at a rate set by a hidden transcription factor.

    .. math:: \\frac{dy_j}{dt} = b_j + s_j\\,G(f(t)) - d_j\\,y_j, \\qquad y_j(0) = b_j / d_j

    with ``G = softplus``.  Each gene starts at its basal steady state.  The
    stored latent force is the factor's activity ``G(f)``, the quantity the
    genes respond to.
    """

    name = "transcription"
    title = "Transcriptional regulation"
    equation = r"\frac{dy_j}{dt} = b_j + s_j\,\mathrm{softplus}(f(t)) - d_j\,y_j"
    description = (
        "Each output is the mRNA level of a target gene; the hidden force is the activity of the transcription "
        "factor (p53 by default) that drives all of them. Kinetics are drawn around the p53 network's published "
        "values (Barenco et al. 2006); genes start at their basal steady state b/d."
    )
    parameters = _kinetic_parameters()
    force_prior = ForcePrior(kernel="rbf", lengthscale=(1.5, 4.0), variance=1.0, mean=0.0)
    output_names = P53_GENES
    output_aliases = P53_GENE_ALIASES
    time_range = (0.0, 12.0)
    default_points = 30
    noise_level = 0.1
    max_step = 0.25
    time_unit = "h"
    output_unit = "mRNA (a.u.)"
    latent_unit = "a.u."
    latent_name = "transcription factor activity"

    def link(self, value: torch.Tensor) -> torch.Tensor:
        """The response ``G = softplus`` of transcription to the factor."""
        return softplus(value)

    def latent_force(self, draw, parameters, mesh, hyper):
        return self.link(draw)

    def rhs(self, t, state, force, parameters: Mapping[str, torch.Tensor]):
        return parameters["basal_rate"] + parameters["sensitivity"] * force[:, None] - parameters["decay_rate"] * state

    def initial_state(self, parameters, n_tasks, n_states, like):
        return (parameters["basal_rate"] / parameters["decay_rate"]).to(like)


@register_system
class LinearTranscription(Transcription):
    """The linear variant ``G = identity``: the case with an exact latent force model.

    .. math:: \\frac{dy_j}{dt} = b_j + s_j\\,f(t) - d_j\\,y_j, \\qquad y_j(0) = b_j / d_j
    """

    name = "transcription-linear"
    title = "Transcriptional regulation (linear)"
    equation = r"\frac{dy_j}{dt} = b_j + s_j\,f(t) - d_j\,y_j"
    description = (
        "The linear variant of transcriptional regulation: genes respond linearly to the factor, so outputs and "
        "force are jointly Gaussian and the exact latent force model (Lawrence et al. 2006) gives the Bayes-optimal "
        "posterior, the accuracy ceiling for every other method."
    )

    def link(self, value: torch.Tensor) -> torch.Tensor:
        """``G = identity``."""
        return value
