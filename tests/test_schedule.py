"""runtime/schedule.py: the loop's schedules, by hand."""

from ssmworld.runtime.schedule import Evaluations, EveryN, MetricWindow, TrainRatio


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
