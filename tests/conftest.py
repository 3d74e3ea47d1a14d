import pytest
import torch


@pytest.fixture
def seed() -> int:
    """The seed every seeded test starts from."""
    return 0


@pytest.fixture
def generator(seed):
    """A seeded CPU generator: every random test draws from it, never from a global RNG."""
    return torch.Generator().manual_seed(1234 + seed)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)
