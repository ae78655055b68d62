"""The overload guard's decision: shed by count, by time in flight, and by queued work."""

from __future__ import annotations

from common.config import LimitsConfig
from serving.guard import Pressure


def test_a_quiet_server_takes_requests() -> None:
    assert Pressure(LimitsConfig()).overloaded(queued=3) is None


def test_beyond_max_queued_is_shed_whatever_the_speed() -> None:
    pressure = Pressure(LimitsConfig(max_queued=4))
    assert pressure.overloaded(queued=3) is None
    assert pressure.overloaded(queued=4) == "4 requests queued"


def test_queued_work_bounds_the_queue_in_time() -> None:
    """On a slow machine (8 ms a lead) fewer requests fill the 50 ms budget than on a fast
    one (1 ms a lead), where the count bound decides."""
    limits = LimitsConfig(max_queued=16, max_queued_work_seconds=0.05)
    slow, fast = Pressure(limits), Pressure(limits)
    for _ in range(200):
        slow.note_inline(0.008)
        fast.note_inline(0.001)
    assert slow.overloaded(queued=6) is None
    assert slow.overloaded(queued=7) is not None
    assert "s of work" in str(slow.overloaded(queued=7))
    assert fast.overloaded(queued=15) is None
    assert fast.overloaded(queued=16) == "16 requests queued"


def test_every_stage_of_shedding_is_counted() -> None:
    pressure = Pressure(LimitsConfig())
    pressure.note_shed("head")
    pressure.note_shed("head")
    pressure.note_shed("pool")
    assert pressure.shed == {"head": 2, "app": 0, "pool": 1}
