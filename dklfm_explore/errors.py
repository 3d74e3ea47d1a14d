"""Exceptions and warnings raised by ``dklfm_explore``.

Every error a caller can cause derives from :class:`DKLFMError` and from the
builtin that matches it, so ``except ValueError`` keeps working.  The message is
one sentence: what is wrong, the offending value, what is accepted.
"""

__all__ = [
    "DKLFMError",
    "InvalidInputError",
    "UnknownNameError",
    "CheckpointError",
    "CholeskyError",
    "TrainingDivergedError",
    "DeviceError",
    "CancelledError",
    "ExtrapolationWarning",
    "OutOfDistributionWarning",
    "NotLearnedWarning",
    "ConstantOutputWarning",
    "NonFiniteResultWarning",
]


class DKLFMError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidInputError(DKLFMError, ValueError):
    """An argument, array or file does not have the form that is accepted."""


class UnknownNameError(DKLFMError, ValueError):
    """A name looked up in a registry (system, kernel, baseline) is not there."""

    def __init__(self, kind: str, name: str, valid, where: str = ""):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        place = f" for {where}" if where else ""
        super().__init__(f"Unknown {kind} {name!r}{place}; valid {kind} names are: {', '.join(self.valid)}.")


class CheckpointError(DKLFMError, ValueError):
    """A checkpoint file is unreadable, corrupted or does not match its use."""


class CholeskyError(DKLFMError, RuntimeError):
    """A covariance matrix stayed non positive definite at the largest jitter."""


class TrainingDivergedError(DKLFMError, RuntimeError):
    """The training loss or the parameters became NaN or infinite."""


class DeviceError(DKLFMError, ValueError):
    """A requested compute device is unknown or not available on this machine."""


class ExtrapolationWarning(UserWarning):
    """A query lies outside the inputs the model was trained on."""


class OutOfDistributionWarning(UserWarning):
    """A task's outputs are unlike the validation tasks the model was trained with (:mod:`dklfm_explore.ood`)."""


class NotLearnedWarning(UserWarning):
    """A model whose verdict says it did not learn is used for inference."""


class CancelledError(DKLFMError):
    """A long job (simulation, training) was cancelled by its caller; nothing partial was kept."""


class ConstantOutputWarning(UserWarning):
    """An output of the tasks does not vary, so it cannot be standardised by its own spread and tells nothing about the force."""


class NonFiniteResultWarning(UserWarning):
    """An inference result holds values that are not finite numbers (NaN or infinite) where numbers were promised."""
