"""InFlight: a bounded number of turns, given in arrival order, never leaked by a waiter that gives up."""

from __future__ import annotations

import asyncio

import pytest

from collector.core.in_flight import InFlight, Turn


async def test_turns_past_the_limit_wait_and_come_in_arrival_order() -> None:
    in_flight = InFlight(2)
    await in_flight.acquire()
    await in_flight.acquire()
    order: list[int] = []

    async def waiter(i: int) -> None:
        await in_flight.acquire()
        order.append(i)

    tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    assert order == [] and in_flight.held == 2
    in_flight.release()
    await asyncio.sleep(0.01)
    assert order == [0]
    in_flight.release()
    in_flight.release()
    await asyncio.sleep(0.01)
    assert order == [0, 1, 2] and in_flight.held == 2
    await asyncio.gather(*tasks)


async def test_a_wait_that_times_out_leaves_the_count_as_it_was() -> None:
    in_flight = InFlight(1)
    await in_flight.acquire()
    with pytest.raises(TimeoutError):
        await in_flight.acquire(timeout=0.05)
    assert in_flight.held == 1
    in_flight.release()
    assert in_flight.held == 0
    await asyncio.wait_for(in_flight.acquire(), 1.0)  # the timed-out waiter does not stand in front
    assert in_flight.held == 1


async def test_a_turn_given_to_a_cancelled_waiter_is_passed_on() -> None:
    in_flight = InFlight(1)
    await in_flight.acquire()
    first = asyncio.create_task(in_flight.acquire())
    second = asyncio.create_task(in_flight.acquire())
    await asyncio.sleep(0.01)
    in_flight.release()  # the turn goes to ``first`` ...
    first.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1.0)
    assert in_flight.held == 1


async def test_raising_the_limit_wakes_waiters_and_zero_means_no_bound() -> None:
    in_flight = InFlight(1)
    await in_flight.acquire()
    waiters = [asyncio.create_task(in_flight.acquire()) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert not any(task.done() for task in waiters)
    in_flight.configure(3, 5.0)
    await asyncio.sleep(0.01)
    assert sum(task.done() for task in waiters) == 2 and in_flight.held == 3
    in_flight.configure(0, 5.0)
    await asyncio.wait_for(asyncio.gather(*waiters), 1.0)
    assert in_flight.held == 4


async def test_a_turn_is_taken_and_given_back_once() -> None:
    in_flight = InFlight(1)
    turn = Turn(in_flight)
    await turn.take()
    await turn.take()  # already held: no second acquire (which would wait forever here)
    assert in_flight.held == 1
    turn.give_back()
    turn.give_back()
    assert in_flight.held == 0
