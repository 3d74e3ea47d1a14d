import pytest


@pytest.fixture
def seed() -> int:
    return 0
