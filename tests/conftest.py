import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Learning tests are slow tests too: `pytest -m "not slow"` is the quick development run."""
    for item in items:
        if item.get_closest_marker("learning"):
            item.add_marker(pytest.mark.slow)
