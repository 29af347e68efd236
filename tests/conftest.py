import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
if os.environ.get("SSMWORLD_TEST_DEVICE"):  # benchmarks/gpu_check.sh: the device tests with every tensor on a GPU
    torch.set_default_device(os.environ["SSMWORLD_TEST_DEVICE"])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Learning tests are slow tests too: `pytest -m "not slow"` is the quick development run. They run first (then
    the other slow ones), so that pytest-xdist hands them out one per worker at the start instead of leaving two
    of them for one worker at the end (CI's wall time is the busiest worker's)."""
    for item in items:
        if item.get_closest_marker("learning"):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: 0 if item.get_closest_marker("learning") else 1 if item.get_closest_marker("slow")
               else 2)  # stable: the collection order within each group
