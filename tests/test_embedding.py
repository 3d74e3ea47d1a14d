import math

import numpy as np
import pytest
import torch

from dklfm_explore.errors import InvalidInputError
from dklfm_explore.model.embedding import TaskEmbedding, interpolate_rows, to_regular_mesh


def _embedding(mesh_dims, seed):
    """An embedding with a random (not zero) last layer, as after some training."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        embedding = TaskEmbedding(mesh_dims, embedding_dim=16, width=32, modes=8)
        embedding.operator.projection.fcs[-1].reset_parameters()
    return embedding


def test_embedding_starts_at_zero(seed):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        embedding = TaskEmbedding(1, embedding_dim=4, width=8, modes=4)
    time = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.equal(embedding(torch.randn(2, 3, 11, dtype=torch.float64), (time,)), torch.zeros(2, 3, 4))


def test_shape_and_dtype(seed):
    embedding = _embedding(1, seed)
    time = torch.linspace(0, 1, 20, dtype=torch.float64)
    out = embedding(torch.randn(3, 5, 20, dtype=torch.float64), (time,))
    assert out.shape == (3, 5, 16)


# Resolution invariance is judged against the distance between the embeddings of two different curves
# (at random initialisation the FNO's biases dominate the embedding's norm).  Measured: 21 vs 40 points
# 0.03x that distance over time, 0.045x over 21 x 21 vs 40 x 40; tolerance 0.1x leaves room for
# O(1/n) Riemann-sum and interpolation (40 -> 41 points) differences.
RESOLUTION_TOLERANCE = 0.1


def test_time_embedding_is_resolution_invariant(seed):
    embedding = _embedding(1, seed)
    curve = lambda t: torch.sin(2 * math.pi * t) + 0.5 * t
    other = lambda t: torch.cos(3 * math.pi * t)
    embed = lambda fn, n: embedding(fn(torch.linspace(0, 1, n, dtype=torch.float64))[None, None], (torch.linspace(0, 1, n, dtype=torch.float64),)).detach()
    coarse, fine = embed(curve, 21), embed(curve, 40)
    assert float((fine - coarse).norm()) < RESOLUTION_TOLERANCE * float((embed(other, 21) - coarse).norm())


def test_space_time_embedding_is_resolution_invariant(seed):
    embedding = _embedding(2, seed)
    field = lambda s, t: torch.sin(math.pi * s)[:, None] * torch.cos(2 * t)[None, :]
    other = lambda s, t: (s[:, None] - 0.5) * torch.sin(4 * t)[None, :]
    def embed(fn, n):
        grid = torch.linspace(0, 1, n, dtype=torch.float64)
        return embedding(fn(grid, grid)[None, None], (grid, grid)).detach()
    coarse, fine = embed(field, 21), embed(field, 40)
    assert float((fine - coarse).norm()) < RESOLUTION_TOLERANCE * float((embed(other, 21) - coarse).norm())


def test_interpolation_matches_numpy_with_gaps(seed):
    rng = np.random.default_rng(seed)
    coord = np.sort(rng.uniform(0, 1, 12))
    values = rng.standard_normal((4, 12))
    values[rng.uniform(size=values.shape) < 0.3] = np.nan
    values[:, 0] = np.where(np.arange(4) == 0, np.nan, values[:, 0])
    target = np.linspace(-0.1, 1.1, 30)
    got = interpolate_rows(torch.as_tensor(values), torch.as_tensor(coord), torch.as_tensor(target)).numpy()
    for row in range(4):
        keep = ~np.isnan(values[row])
        np.testing.assert_allclose(got[row], np.interp(target, coord[keep], values[row, keep]), atol=1e-12)


def test_regular_mesh_without_gaps_is_unchanged(seed):
    y = torch.randn(2, 3, 15, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    time = torch.linspace(0, 9, 15, dtype=torch.float64)
    values, (regular,) = to_regular_mesh(y, (time,))
    assert torch.equal(values, y) and torch.allclose(regular, time)


def test_even_mesh_is_interpolated_onto_odd_mesh():
    time = torch.linspace(0, 1, 10, dtype=torch.float64)
    values, (regular,) = to_regular_mesh((2 * time + 1)[None, None], (time,))
    assert regular.numel() == 11
    torch.testing.assert_close(values[0, 0], 2 * regular + 1, atol=1e-12, rtol=0)


def test_gappy_space_time_grid_is_filled():
    y = torch.ones(1, 1, 5, 6, dtype=torch.float64)
    y[0, 0, 2, :] = float("nan")
    y[0, 0, :, 3] = float("nan")
    grid = (torch.linspace(0, 1, 5, dtype=torch.float64), torch.linspace(0, 1, 6, dtype=torch.float64))
    values, _ = to_regular_mesh(y, grid)
    assert torch.allclose(values, torch.ones_like(values))


def test_output_without_observations_is_an_error():
    y = torch.zeros(2, 2, 5, dtype=torch.float64)
    y[1, 0] = float("nan")
    with pytest.raises(InvalidInputError, match="Output 0 of task 1"):
        to_regular_mesh(y, (torch.linspace(0, 1, 5, dtype=torch.float64),))
