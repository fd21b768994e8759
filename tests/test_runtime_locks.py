"""Per-session turn locks: one turn per session at a time, other sessions not held up, no lock left behind."""

from __future__ import annotations

import threading

from sigmavault.runtime.locks import SessionLocks


def test_a_second_turn_of_the_same_session_waits_and_other_sessions_do_not() -> None:
    locks = SessionLocks()
    inside, release = threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        with locks.hold("s1"):
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")

    def second() -> None:
        with locks.hold("s1"):
            order.append("second in")

    t1 = threading.Thread(target=first)
    t1.start()
    assert inside.wait(10)
    t2 = threading.Thread(target=second)
    t2.start()
    # another session is never held up by s1's turn
    with locks.hold("s2"):
        order.append("other session")
    assert len(locks) == 1  # s1 only: s2 went when its turn ended
    release.set()
    t1.join(10)
    t2.join(10)
    assert order.index("first out") < order.index("second in")
    assert order.index("other session") < order.index("first out")
    assert len(locks) == 0


def test_a_turn_that_raises_releases_its_session() -> None:
    locks = SessionLocks()
    try:
        with locks.hold("s"):
            raise ValueError("boom")
    except ValueError:
        pass
    assert len(locks) == 0
    with locks.hold("s"):  # not left locked
        assert len(locks) == 1
