"""Choice of the compute device, made once at each entry point."""

from __future__ import annotations

import torch

from .errors import DeviceError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return the device to compute on.

    Parameters
    ----------
    device : str, torch.device or None
        ``None`` or ``"auto"`` picks ``cuda`` when available, else ``cpu``.
        ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` are taken as given.

    Raises
    ------
    DeviceError
        If the name is not a device, or CUDA is asked for but not available;
        there is never a silent fallback to the CPU.
    """
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise DeviceError(
            f"Device {device!r} is not a device name; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        ) from error
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"Device {device!r} was requested but CUDA is not available on this machine; use 'cpu' or 'auto'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(
                f"Device {device!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)."
            )
    elif resolved.type != "cpu":
        raise DeviceError(f"Device {device!r} is not supported; use 'auto', 'cpu' or 'cuda'.")
    return resolved
