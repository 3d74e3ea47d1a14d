"""Whether a trained model learned: its held-out latent error against the prior mean's, and its coverage.

The criterion (:meth:`Verdict.judge`): a model *learned* when, on its validation tasks,

* its latent MSE is at most :data:`LEARNED_RATIO` (one half) of the MSE of the prior-mean
  predictor, which predicts the training tasks' mean latent value at every point (in the
  standardised units training uses this is 0, and its MSE is about 1), and
* its 95% coverage (the fraction of true latent values inside ``mean +- 1.96 std``) is finite.

A model stuck at the prior (the latent decoupled from the outputs, DESIGN.md) predicts that
constant mean and scores a ratio near 1; one half leaves room for the standard error of a few
hundred validation tasks while failing every model whose inferred force is close to flat.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from .errors import InvalidInputError

__all__ = ["Verdict", "LEARNED_RATIO"]

LEARNED_RATIO = 0.5
"""A model learned when its latent MSE is at most this fraction of the prior-mean predictor's."""


@dataclass(frozen=True)
class Verdict:
    """The verdict on a trained model, computed on its validation tasks (standardised units).

    Attributes
    ----------
    learned : bool
    latent_mse : float
        Latent MSE of the posterior mean, pooled over the validation tasks' latent points.
    latent_mse_se : float
        Standard error of ``latent_mse`` over the validation tasks (std of per-task MSEs / sqrt(n)).
    prior_mse : float
        MSE of the prior-mean predictor on the same points.
    coverage95 : float
        Fraction of true latent values inside the calibrated 95% intervals.
    n_tasks : int
        Validation tasks the figures rest on.
    message : str
        One sentence saying the above in words.
    """

    learned: bool
    latent_mse: float
    latent_mse_se: float
    prior_mse: float
    coverage95: float
    n_tasks: int
    message: str

    @classmethod
    def judge(cls, latent_mse: float, latent_mse_se: float, prior_mse: float, coverage95: float, n_tasks: int) -> "Verdict":
        """Apply the criterion of this module's docstring and word the result."""
        latent_mse, prior_mse, coverage95 = float(latent_mse), float(prior_mse), float(coverage95)
        finite = math.isfinite(latent_mse) and math.isfinite(prior_mse) and prior_mse > 0
        learned = bool(finite and math.isfinite(coverage95) and latent_mse <= LEARNED_RATIO * prior_mse)
        tail = f"on {int(n_tasks)} validation task{'s' if n_tasks != 1 else ''}"
        if learned:
            message = (f"learned: latent MSE {latent_mse:.3g} +- {latent_mse_se:.2g}, {prior_mse / max(latent_mse, 1e-300):.3g}x "
                       f"better than the prior mean ({prior_mse:.3g}), 95% coverage {coverage95:.2f} {tail}")
        elif not finite:
            message = (f"did not learn: the latent MSE is {latent_mse:g} {tail}; check the tasks for missing or constant "
                       "latent values, or train again with another seed")
        elif not math.isfinite(coverage95):
            message = (f"did not learn: latent MSE {latent_mse:.3g} but the 95% coverage is {coverage95:g} {tail} "
                       "(no usable uncertainty); train again with another seed")
        else:
            ratio = latent_mse / prior_mse
            how = ("is no better than predicting the prior mean" if ratio >= 0.9
                   else f"is only {1 / ratio:.3g}x better than the prior mean (at least {1 / LEARNED_RATIO:g}x is needed)")
            message = (f"did not learn: latent MSE {latent_mse:.3g} +- {latent_mse_se:.2g} {how} ({prior_mse:.3g}) {tail}; "
                       "try a longer budget (--max-minutes), another --seed, or more training tasks")
        return cls(learned=learned, latent_mse=latent_mse, latent_mse_se=float(latent_mse_se), prior_mse=prior_mse,
                   coverage95=coverage95, n_tasks=int(n_tasks), message=message)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Verdict":
        """Rebuild a stored verdict; raise :class:`InvalidInputError` naming a missing or malformed field."""
        if not isinstance(values, dict):
            raise InvalidInputError(f"A verdict must be a dict, got {type(values).__name__}.")
        names = [field.name for field in fields(cls)]
        missing = [name for name in names if name not in values]
        if missing:
            raise InvalidInputError(f"The verdict lacks field(s) {', '.join(missing)}.")
        try:
            return cls(
                learned=_boolean(values["learned"]),
                latent_mse=float(values["latent_mse"]),
                latent_mse_se=float(values["latent_mse_se"]),
                prior_mse=float(values["prior_mse"]),
                coverage95=float(values["coverage95"]),
                n_tasks=int(values["n_tasks"]),
                message=_text(values["message"]),
            )
        except (TypeError, ValueError) as error:
            raise InvalidInputError(f"The verdict has a malformed field ({error}).") from error


def _boolean(value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"learned must be true or false, got {value!r}")
    return value


def _text(value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"message must be a string, got {type(value).__name__}")
    return value
