"""runtime/schedule.py: the loop's schedules, by hand."""

from ssmworld.runtime.schedule import Evaluations, EveryN, MetricWindow, TrainRatio, learning_starts


def test_train_ratio_spends_whole_credits():
    ratio = TrainRatio(0.75)
    assert [ratio.updates() for _ in range(4)] == [0, 1, 1, 1]  # credit 0.75, 1.5, 1.25, 1.0 -> 0.75, 0.5, 0.25, 0
    assert ratio.credit == 0.0
    assert [TrainRatio(2.5).updates() for _ in range(1)] == [2]


def test_every_n_fires_when_a_multiple_is_passed():
    every = EveryN(1000)
    assert every.crossed(999, 1000) and every.crossed(900, 1100) and not every.crossed(1000, 1999)
    assert not EveryN(0).crossed(0, 10**6)


def test_evaluations_at_each_multiple_but_not_at_the_end():
    evaluations = Evaluations(every=100, end=300)
    due = [step for step in range(0, 301, 50) if evaluations.due(step)]
    assert due == [100, 200] and evaluations.next == 300  # 300 is the end: the final evaluation covers it
    assert not any(Evaluations(0, 300).due(step) for step in range(301))


def test_metric_window_averages_and_survives_a_checkpoint():
    window = MetricWindow()
    window.add({"loss": 1.0})
    window.add({"loss": 3.0})
    saved = dict(window.state())
    row = window.row(step=10, updates=2)
    assert row["train/loss"] == 2.0 and window.count == 0 and window.step == 10
    resumed = MetricWindow()
    resumed.load(saved)
    assert resumed.row(step=10, updates=2)["train/loss"] == 2.0


def test_train_ratio_is_not_delayed_by_rounding():
    ratio = TrainRatio(0.1)  # ten additions of 0.1 sum to 0.9999999999999999
    counts = [ratio.updates() for _ in range(100_000)]
    assert counts.index(1) == 9 and sum(counts) == 10_000


def test_learning_starts_once_every_stream_holds_a_sequence():
    assert learning_starts(1000, 64, 16, 1, 1, "uniform") == 1000  # the prefill
    assert learning_starts(1000, 1024, 16, 4, 1, "uniform") == 4 * 1024  # r2i paper: 4 envs, T = 1024
    assert learning_starts(1000, 1024, 16, 40, 1, "uniform") == 40 * 1024  # Memory Maze: 40 envs
    assert learning_starts(10, 8, 16, 4, 2, "uniform") == 8 * 4 * 2  # every env of every rank
    # dfs draws 16 distinct sequences: 4 streams of 8 + 3 steps hold 4 x 4
    assert learning_starts(10, 8, 16, 4, 1, "dfs") == (8 + 3) * 4


def test_evaluations_after_an_iteration_that_passes_several_multiples():
    evaluations = Evaluations(every=10, end=100)
    assert evaluations.due(35) and evaluations.next == 40  # one evaluation for 10, 20, 30
    evaluations.skip_to(60)  # the final evaluation of a session that ended at 60
    assert evaluations.next == 70 and not evaluations.due(65) and evaluations.due(70)


def test_several_envs_start_learning_once_each_stream_holds_a_sequence():
    from ssmworld.runtime.config import load_config
    from ssmworld.runtime.train import Trainer

    cfg = load_config("r2i", "debug", "builtin:recall/2", {"train.envs": 4, "train.prefill": 8,
                                                             "train.eval_episodes": 1})
    cfg.train.steps = 80
    summary = Trainer(cfg, quiet=True).run()  # replay had no 8-step stream at step 8: every stream has 2 steps
    assert summary["steps"] == 80 and summary["updates"] > 0
