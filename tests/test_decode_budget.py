"""The decode budget shared by threads (limits.SharedBudget): small decodes run side by side,
large ones one after the other, and nothing waits on itself."""

from __future__ import annotations

import threading

from covid_edge.limits import SharedBudget


def reserve_in_thread(budget: SharedBudget, cost: int, entered: threading.Event,
                      leave: threading.Event) -> threading.Thread:
    def hold():
        with budget.reserve(cost):
            entered.set()
            leave.wait(10)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread


def test_small_decodes_run_side_by_side():
    budget = SharedBudget(100)
    leave = threading.Event()
    first, second = threading.Event(), threading.Event()
    threads = [reserve_in_thread(budget, 30, first, leave),
               reserve_in_thread(budget, 30, second, leave)]
    assert first.wait(5) and second.wait(5)
    assert budget.in_use == 60
    leave.set()
    for thread in threads:
        thread.join(5)
    assert budget.in_use == 0


def test_a_large_decode_waits_for_the_other_to_finish():
    budget = SharedBudget(100)
    leave_first, leave_second = threading.Event(), threading.Event()
    first, second = threading.Event(), threading.Event()
    holder = reserve_in_thread(budget, 60, first, leave_first)
    assert first.wait(5)
    waiter = reserve_in_thread(budget, 60, second, leave_second)
    assert not second.wait(0.3), "two decodes over the budget ran at once"
    leave_first.set()
    assert second.wait(5), "the waiting decode never started"
    assert budget.in_use == 60
    leave_second.set()
    holder.join(5)
    waiter.join(5)
    assert budget.in_use == 0


def test_the_first_decode_never_waits_and_errors_release_it():
    budget = SharedBudget(100)
    try:
        with budget.reserve(150):  # over the total: alone, it still runs
            raise ValueError("a corrupt image")
    except ValueError:
        pass
    assert budget.in_use == 0
    with budget.reserve(100):
        assert budget.in_use == 100
