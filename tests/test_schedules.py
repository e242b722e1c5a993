import itertools
import math

import pytest

from npdl.schedules import LearningRateSchedule


def test_constant_with_course_decay_per_epoch():
    s = LearningRateSchedule(1.0, "constant", steps_per_epoch=10, lr_decay=0.5)
    assert [s(0), s(9), s(10), s(25)] == [1.0, 1.0, 0.5, 0.25]


def test_step_schedule():
    s = LearningRateSchedule(1.0, "step", steps_per_epoch=2, step_size=3, gamma=0.1)
    assert s(5) == 1.0 and s(6) == pytest.approx(0.1) and s(12) == pytest.approx(0.01)


def test_warmup_then_cosine_to_min_lr():
    s = LearningRateSchedule(
        1.0, "cosine", steps_per_epoch=10, total_epochs=12, warmup_epochs=2, min_lr=0.1
    )
    assert s(0) == pytest.approx(1 / 20) and s(19) == pytest.approx(1.0)
    assert s(20) == pytest.approx(1.0)
    assert s(70) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))
    assert s(120) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)
    values = [s(i) for i in range(20, 120)]
    assert all(a >= b for a, b in itertools.pairwise(values))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "linear"}, "allowed: constant, step, cosine"),
        ({"base_lr": -1}, "> 0"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
    ],
)
def test_bad_schedule_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LearningRateSchedule(**{"base_lr": 1.0, **kwargs})
