"""Task embedding: a Fourier neural operator over each output curve, averaged over the mesh (DESIGN.md item 1).

For each output ``p`` of a task, the FNO (``neuralop.models.FNO``) maps the
curve on a regular mesh plus the mesh coordinates (one channel per mesh
dimension) to ``E`` channels; the mean over the mesh gives ``e_p``.  Because the
FNO's spectral layers act on Fourier coefficients (normalised by the number of
points) and the mean approximates an integral, the embedding barely depends on
the resolution: a 40 x 40 grid embeds like a 21 x 21 one.

Irregular or gappy (NaN) measurements are linearly interpolated onto a
regular mesh spanning the same range, for the embedding only.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InvalidInputError

__all__ = ["TaskEmbedding", "to_regular_mesh", "interpolate_rows"]

REGULAR_TOLERANCE = 1e-9
"""Relative deviation of mesh spacing below which a mesh counts as regular (float64 linspace round-off)."""


class TaskEmbedding(nn.Module):
    """FNO embedding of each output curve of each task.

    Parameters
    ----------
    mesh_dims : int
        1 (time) or 2 (space x time).
    embedding_dim : int
        ``E``, channels of the embedding.
    width : int
        Hidden channels of the FNO.
    modes : int
        Fourier modes kept per mesh dimension.
    n_layers : int
        Fourier layers.

    The FNO runs in float32.  Its last projection layer starts at zero, so every embedding is 0 at
    initialisation and output points share the latent points' features (``K_hy = K_hh``): measured,
    a random initial embedding let training stick at the prior (DESIGN.md pitfalls).
    """

    def __init__(self, mesh_dims: int, embedding_dim: int, width: int, modes: int, n_layers: int = 2):
        super().__init__()
        from neuralop.models import FNO  # importing neuralop changes the global warnings filter; defer until built

        self.mesh_dims = mesh_dims
        self.operator = FNO(
            n_modes=(modes,) * mesh_dims,
            in_channels=1 + mesh_dims,
            out_channels=embedding_dim,
            hidden_channels=width,
            n_layers=n_layers,
            positional_embedding=None,
        )
        last = self.operator.projection.fcs[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, y: torch.Tensor, coords: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Embed every output curve.

        Parameters
        ----------
        y : Tensor (task, output, [space,] time)
            Standardised outputs, NaN where missing.
        coords : tuple of Tensor
            ``(time,)`` or ``(space, time)`` normalised mesh coordinates, in the order of ``y``'s mesh dims.

        Returns
        -------
        Tensor (task, output, embedding) float32
        """
        values, regular = to_regular_mesh(y, coords)
        n_tasks, n_outputs = values.shape[:2]
        mesh_shape = values.shape[2:]
        grids = torch.meshgrid(*regular, indexing="ij")
        channels = torch.stack([g.expand(n_tasks, n_outputs, *mesh_shape) for g in grids], dim=2)
        inputs = torch.cat([values.unsqueeze(2), channels], dim=2).reshape(n_tasks * n_outputs, 1 + self.mesh_dims, *mesh_shape)
        dtype = self.operator.lifting.fcs[0].weight.dtype
        outputs = self.operator(inputs.to(dtype))
        return outputs.mean(dim=tuple(range(2, 2 + self.mesh_dims))).reshape(n_tasks, n_outputs, -1)


def to_regular_mesh(y: torch.Tensor, coords: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Interpolate curves with gaps or an irregular mesh onto a regular mesh with an odd number of points.

    The regular mesh spans the same range with the same number of points, plus one if that number
    is even: neuralop's FNO keeps a different set of Fourier modes on even and odd grids (measured:
    a 40 x 40 grid embedded 100x further from a 21 x 21 one than a 41 x 41 grid), so odd grids keep
    the embedding resolution invariant.

    Parameters
    ----------
    y : Tensor (task, output, *mesh)
        NaN where missing.
    coords : tuple of Tensor
        One increasing 1-D coordinate tensor per mesh dim.

    Returns
    -------
    values : Tensor (task, output, *regular_mesh)
        Without NaN (constant continuation beyond the first/last observed point).
    regular : tuple of Tensor
        The regular coordinates.

    Raises
    ------
    InvalidInputError
        If some output of some task has no observed value at all.
    """
    values = y
    regular = []
    mesh_dims = len(coords)
    for axis, coord in enumerate(coords):
        count = coord.numel() + (1 - coord.numel() % 2)
        target = torch.linspace(float(coord[0]), float(coord[-1]), count, dtype=coord.dtype, device=coord.device)
        regular.append(target)
        spacing = torch.diff(coord)
        is_regular = bool(torch.all((spacing - spacing.mean()).abs() <= REGULAR_TOLERANCE * spacing.abs().mean()))
        if is_regular and count == coord.numel() and not bool(torch.isnan(values).any()):
            continue
        dim = values.ndim - mesh_dims + axis
        moved = values.movedim(dim, -1)
        flat = interpolate_rows(moved.reshape(-1, moved.shape[-1]), coord, target)
        values = flat.reshape(moved.shape[:-1] + (target.numel(),)).movedim(-1, dim)
    if bool(torch.isnan(values).any()):
        empty = torch.isnan(values).flatten(2).all(dim=-1).nonzero()
        task, output = (int(v) for v in empty[0])
        raise InvalidInputError(f"Output {output} of task {task} has no observed value; every output needs at least one.")
    return values, tuple(regular)


def interpolate_rows(values: torch.Tensor, coord: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Linearly interpolate each row's observed (non-NaN) values at ``target``.

    Parameters
    ----------
    values : Tensor (row, n)
        NaN where missing; a row without observations stays NaN.
    coord : Tensor (n,)
        Increasing coordinates of the columns.
    target : Tensor (m,)

    Returns
    -------
    Tensor (row, m)
        Beyond the first/last observed point of a row the nearest observed value is repeated.
    """
    n = coord.numel()
    observed = ~torch.isnan(values)
    index = torch.arange(n, device=values.device).expand_as(values)
    previous = torch.where(observed, index, torch.full_like(index, -1)).cummax(dim=-1).values
    following = torch.where(observed, index, torch.full_like(index, n)).flip(-1).cummin(dim=-1).values.flip(-1)
    cell = (torch.searchsorted(coord.contiguous(), target.contiguous(), right=True) - 1).clamp(0, n - 1)
    left = previous[:, cell]
    right = following[:, (cell + 1).clamp(max=n - 1)]
    right = torch.where((cell + 1 < n).expand_as(right), right, torch.full_like(right, n))
    has_left, has_right = left >= 0, right < n
    left = torch.where(has_left, left, right)
    right = torch.where(has_right, right, left)
    left, right = left.clamp(0, n - 1), right.clamp(0, n - 1)
    x_left, x_right = coord[left], coord[right]
    span = x_right - x_left
    weight = torch.where(span > 0, (target - x_left) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(span))
    weight = weight.clamp(0.0, 1.0)
    filled = torch.nan_to_num(values)
    value_left = filled.gather(-1, left)
    value_right = filled.gather(-1, right)
    result = value_left + weight * (value_right - value_left)
    return torch.where(observed.any(dim=-1, keepdim=True), result, torch.full_like(result, float("nan")))
