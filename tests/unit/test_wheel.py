"""TimerWheel: deadline order, O(1) cancel, exact next_deadline, overflow, jumps, memory."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from automationd.core.wheel import Handle, TimerWheel

T0 = 1_800_000_000.0
DAY = 86400.0


@pytest.mark.parametrize(
    ("deadlines", "now", "popped", "left"),
    [
        ([1.0, 0.5, 2.0], 1.0, [0.5, 1.0], [2.0]),
        ([0.0001, 0.0002, 0.0003], 0.0002, [0.0001, 0.0002], [0.0003]),  # same tick split
        ([5.0, 0.3, 100.0, 3600.0], 200.0, [0.3, 5.0, 100.0], [3600.0]),
        ([60 * DAY, 1.0, 90 * DAY], 61 * DAY, [1.0, 60 * DAY], [90 * DAY]),  # overflow heap
        ([-10.0, -0.5, 0.0], 0.0, [-10.0, -0.5, 0.0], []),  # already due when added
        ([0.2561, 0.2559, 65.537, 65.535], 1000.0, [0.2559, 0.2561, 65.535, 65.537], []),
        ([10.0, 10.0, 10.0], 9.999, [], [10.0, 10.0, 10.0]),
    ],
)
def test_pop_due_returns_due_items_in_deadline_order(
    deadlines: list[float], now: float, popped: list[float], left: list[float]
) -> None:
    """pop_due(now) returns exactly the items with deadline <= now, earliest first."""
    wheel: TimerWheel[float] = TimerWheel(T0)
    for d in deadlines:
        wheel.add(T0 + d, d)
    assert wheel.pop_due(T0 + now) == popped
    assert len(wheel) == len(left)
    assert wheel.next_deadline() == (T0 + min(left) if left else None)
    assert sorted(d for d, _ in wheel.drain()) == [T0 + d for d in left]


def test_ties_pop_in_insertion_order() -> None:
    """Items with the same deadline come out in the order they were added."""
    wheel: TimerWheel[str] = TimerWheel(T0)
    for name in "abcde":
        wheel.add(T0 + 30, name)
    assert wheel.pop_due(T0 + 30) == list("abcde")


def test_cancel_is_idempotent_and_excludes_the_item() -> None:
    """A cancelled item never pops; cancelling twice, or after it popped, is a no-op."""
    wheel: TimerWheel[str] = TimerWheel(T0)
    a = wheel.add(T0 + 1, "a")
    b = wheel.add(T0 + 2, "b")
    far = wheel.add(T0 + 400 * DAY, "far")
    wheel.cancel(a)
    wheel.cancel(a)
    wheel.cancel(far)
    assert (len(wheel), a.active, b.active) == (1, False, True)
    assert wheel.next_deadline() == T0 + 2
    assert wheel.pop_due(T0 + 500 * DAY) == ["b"]
    wheel.cancel(b)
    assert len(wheel) == 0
    assert wheel.next_deadline() is None


def test_next_deadline_tracks_adds_cancels_and_pops() -> None:
    """next_deadline is the exact minimum after each kind of change."""
    wheel: TimerWheel[int] = TimerWheel(T0)
    assert wheel.next_deadline() is None
    h3 = wheel.add(T0 + 3.25, 3)
    assert wheel.next_deadline() == T0 + 3.25
    h1 = wheel.add(T0 + 1.0005, 1)
    wheel.add(T0 + 1.0009, 2)  # same level-0 slot as h1: exact float, not slot start
    assert wheel.next_deadline() == T0 + 1.0005
    wheel.cancel(h1)
    assert wheel.next_deadline() == T0 + 1.0009
    assert wheel.pop_due(T0 + 2) == [2]
    assert wheel.next_deadline() == T0 + 3.25
    wheel.cancel(h3)
    wheel.add(T0 + 100 * DAY, 4)
    assert wheel.next_deadline() == T0 + 100 * DAY


def test_big_forward_jump_pops_everything_overdue_at_once() -> None:
    """After a long gap (suspend, clock step) one pop_due returns all overdue items in order."""
    wheel: TimerWheel[int] = TimerWheel(T0)
    deadlines = [T0 + i * 997.5 for i in range(5000)]
    for i, d in enumerate(reversed(deadlines)):
        wheel.add(d, 4999 - i)
    assert wheel.pop_due(T0 + 5000 * 997.5) == list(range(5000))
    assert len(wheel) == 0


def test_pop_due_before_the_wheel_position_only_takes_what_is_due() -> None:
    """If now goes backwards, pop_due still returns only items with deadline <= now."""
    wheel: TimerWheel[str] = TimerWheel(T0)
    wheel.pop_due(T0 + 100)
    wheel.add(T0 + 50, "past-but-later")
    wheel.add(T0 + 10, "past")
    assert wheel.pop_due(T0 + 20) == ["past"]
    assert wheel.next_deadline() == T0 + 50


def test_rebase_after_backward_jump_keeps_handles_valid() -> None:
    """1. The wheel advanced to T0+1h. 2. Wall clock steps back to T0; rebase(T0).
    Result: items spread again, pop at their wall deadlines, and old handles still cancel."""
    wheel: TimerWheel[str] = TimerWheel(T0)
    wheel.pop_due(T0 + 3600)
    keep = wheel.add(T0 + 3700, "later")
    gone = wheel.add(T0 + 60, "soon")
    wheel.rebase(T0)
    assert wheel.next_deadline() == T0 + 60
    wheel.cancel(gone)
    assert wheel.pop_due(T0 + 3650) == []
    assert wheel.pop_due(T0 + 3700) == ["later"]
    assert not keep.active


def test_drain_returns_everything_sorted_and_empties() -> None:
    """drain() hands back (deadline, item) pairs earliest first and leaves an empty wheel."""
    wheel: TimerWheel[str] = TimerWheel(T0)
    handles = [wheel.add(T0 + d, f"i{d}") for d in (500 * DAY, 3.0, 0.5)]
    assert wheel.drain() == [
        (T0 + 0.5, "i0.5"),
        (T0 + 3.0, "i3.0"),
        (T0 + 500 * DAY, "i43200000.0"),
    ]
    assert (len(wheel), wheel.next_deadline(), wheel.pop_due(T0 + 1e9)) == (0, None, [])
    assert not any(h.active for h in handles)
    wheel.cancel(handles[0])


def test_mass_cancel_compacts_storage() -> None:
    """Cancelling most entries triggers a compaction, so dead handles do not pile up."""
    wheel: TimerWheel[int] = TimerWheel(T0)
    handles = [wheel.add(T0 + 30 * DAY + i, i) for i in range(5000)]
    for h in handles[:4900]:
        wheel.cancel(h)
    assert len(wheel) == 100
    assert wheel._dead <= 1025
    assert wheel.pop_due(T0 + 31 * DAY) == list(range(4900, 5000))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"slots": 100}, "power of two"), ({"levels": 0}, "levels"), ({"resolution": 0}, "levels")],
)
def test_bad_construction_is_rejected(kwargs: dict[str, int], message: str) -> None:
    """Non-power-of-two slots, zero levels or zero resolution raise ValueError."""
    with pytest.raises(ValueError, match=message):
        TimerWheel(T0, **kwargs)


def test_non_finite_deadline_is_rejected() -> None:
    """add(inf) raises rather than parking an item forever."""
    wheel: TimerWheel[int] = TimerWheel(T0)
    with pytest.raises(ValueError, match="finite"):
        wheel.add(float("inf"), 1)


def test_memory_for_100k_entries_stays_small() -> None:
    """100,000 timers cost well under 100 bytes each (slotted handles, lists per slot)."""
    deadlines = [T0 + (i * 7919) % (90 * DAY) + 0.5 for i in range(100_000)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    wheel: TimerWheel[None] = TimerWheel(T0)
    handles: list[Handle[None]] = [wheel.add(d, None) for d in deadlines]
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    handle_list = 8 * len(handles) + 56
    assert (used - handle_list) / 100_000 < 100, used
    assert len(wheel) == 100_000


# -- model check: the wheel behaves like a sorted list -------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.floats(-1, 2e4, allow_nan=False)),
        st.tuples(st.just("add"), st.floats(0, 5e9, allow_nan=False)),
        st.tuples(st.just("cancel"), st.integers(0, 10**6)),
        st.tuples(st.just("pop"), st.floats(0, 3e3, allow_nan=False)),
        st.tuples(st.just("pop"), st.floats(0, 1e9, allow_nan=False)),
        st.tuples(st.just("rebase"), st.floats(-500, 0, allow_nan=False)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops=ops, small=st.booleans())
def test_wheel_matches_a_sorted_list_model(ops: list[tuple[str, float]], small: bool) -> None:
    """Random adds, cancels, pops (small steps and huge jumps) and rebases give the same
    results as a plain list; tiny wheels (4 slots, 2 levels) exercise cascades and overflow."""
    wheel: TimerWheel[int] = (
        TimerWheel(0.0, resolution=1.0, slots=4, levels=2) if small else TimerWheel(0.0)
    )
    model: dict[int, float] = {}
    handles: list[Handle[int]] = []
    now = 0.0
    for op, x in ops:
        if op == "add":
            handles.append(wheel.add(now + x, len(handles)))
            model[len(handles) - 1] = now + x
        elif op == "cancel" and handles:
            i = int(x) % len(handles)
            wheel.cancel(handles[i])
            model.pop(i, None)
        elif op == "pop":
            now += x
            due = sorted((d, i) for i, d in model.items() if d <= now)
            got = wheel.pop_due(now)
            assert [model[i] for i in got] == [d for d, _ in due]
            assert sorted(got) == sorted(i for _, i in due)
            for i in got:
                del model[i]
        elif op == "rebase":
            now += x
            wheel.rebase(now)
        assert len(wheel) == len(model)
        assert wheel.next_deadline() == (min(model.values()) if model else None)
