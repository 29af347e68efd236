import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
if os.environ.get("SSMWORLD_TEST_DEVICE"):  # benchmarks/gpu_check.sh: the device tests with every tensor on a GPU
    torch.set_default_device(os.environ["SSMWORLD_TEST_DEVICE"])


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", help="also run the tests marked long (learning runs beyond CI's "
                     "time budget, e.g. learning controls; their results are recorded in docs/RESULTS.md)")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (CI: `-n 2`) hand tests out one at a time, in the order below. xdist's default first sends
    each worker a block of a quarter of its share of consecutive tests, which put every learning and slow test on one
    worker (the other ran the quick tests and then idled: CI's wall time was that one worker's sum)."""
    if getattr(config.option, "maxschedchunk", "absent") is None:
        config.option.maxschedchunk = 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Learning tests are slow tests too: `pytest -m "not slow"` is the quick development run. Longest first: learning
    tests, then the other slow ones, then the rest, so that with tests handed out one at a time the last tests to start
    are short ones and both workers finish together."""
    for item in items:
        if item.get_closest_marker("learning"):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("long") and not item.config.getoption("--long"):
            item.add_marker(pytest.mark.skip(reason="a long learning run, not in CI (run with --long)"))
    items.sort(key=_schedule_rank)  # stable: the collection order within each group


# Measured in CI at 1 thread (2026-11-30): the context tests ~5.5 min each, the recall tests 3-5 min; then slow tests
# of a minute or more. The others keep their collection order within their group.
_LONGEST_FIRST = ("test_r2i_recalls_a_cue_from_pixels", "test_episode_context_learns_a_memory_longer_than_the_window",
                  "test_window_context_stays_at_chance", "test_r2i_recalls_a_cue_after_six_steps",
                  "test_gpu_check_script_passes_on_the_cpu", "test_every_readme_block_runs",
                  "test_a_killed_run_is_retried_and_resumes_from_its_checkpoint",
                  "test_fast_contacts_gives_the_same_episodes")


def _schedule_rank(item: pytest.Item) -> tuple[int, int]:
    name = item.name.split("[")[0]
    if name in _LONGEST_FIRST:
        return 0, _LONGEST_FIRST.index(name)
    return (1, 0) if item.get_closest_marker("slow") else (2, 0)
