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
    items.sort(key=_schedule_rank)  # stable: the collection order within each group


# xdist hands the first tests out round-robin: the two context tests (~6 min each at 1 thread) go to different
# workers, and each worker then gets one or two of the ~3-5 minute ones.
_LONGEST_FIRST = ("test_episode_context_learns_a_memory_longer_than_the_window", "test_window_context_stays_at_chance",
                  "test_r2i_recalls_a_cue_after_six_steps", "test_r2i_recalls_a_cue_from_pixels")


def _schedule_rank(item: pytest.Item) -> tuple[int, int]:
    if item.get_closest_marker("learning"):
        name = item.name.split("[")[0]
        return 0, _LONGEST_FIRST.index(name) if name in _LONGEST_FIRST else len(_LONGEST_FIRST)
    return (1, 0) if item.get_closest_marker("slow") else (2, 0)
