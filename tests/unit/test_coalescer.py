"""aio.Coalescer: concurrent items served in bounded batches, bounded batches in flight."""

from __future__ import annotations

import asyncio

import pytest

from langchain_rag_async.aio.coalesce import Coalescer, Failed

WAIT = 30.0


class Gated:
    """A batch call that records its batches and answers only when the test lets it."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.in_flight = 0
        self.peak = 0
        self.release = asyncio.Event()
        self.started = asyncio.Condition()

    async def __call__(self, items: list[int]) -> list[int | Failed]:
        self.batches.append(items)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        async with self.started:
            self.started.notify_all()
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        if 13 in items:
            raise ConnectionError("batch failed")
        return [Failed(ValueError(item)) if item == 7 else item * 10 for item in items]

    async def wait_for_batches(self, count: int) -> None:
        async with asyncio.timeout(WAIT), self.started:
            await self.started.wait_for(lambda: len(self.batches) >= count)


async def test_a_burst_is_served_in_bounded_batches_at_most_max_flushes_at_once() -> None:
    call = Gated()
    coalescer: Coalescer[int, int] = Coalescer(call, max_batch=4, max_flushes=lambda: 3)
    tasks = [asyncio.create_task(coalescer.submit(i)) for i in range(20) if i not in (7, 13)]
    await call.wait_for_batches(3)
    assert coalescer.flushing == 3 and call.in_flight == 3  # the others wait for a flush
    call.release.set()
    results = await asyncio.gather(*tasks)
    assert results == [i * 10 for i in range(20) if i not in (7, 13)]
    assert call.peak == 3
    assert all(len(batch) <= 4 for batch in call.batches)
    assert sorted(i for batch in call.batches for i in batch) == [
        i for i in range(20) if i not in (7, 13)
    ]
    assert coalescer.flushing == 0


async def test_a_lone_item_is_served_at_once_alone() -> None:
    call = Gated()
    call.release.set()
    coalescer: Coalescer[int, int] = Coalescer(call, max_batch=8, max_flushes=lambda: 2)
    assert await coalescer.submit(5) == 50
    assert call.batches == [[5]]


async def test_errors_reach_their_own_callers_only() -> None:
    call = Gated()
    coalescer: Coalescer[int, int] = Coalescer(call, max_batch=2, max_flushes=lambda: 4)
    tasks = [asyncio.create_task(coalescer.submit(i)) for i in (6, 7, 12, 13, 14, 15)]
    call.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == 60
    assert isinstance(results[1], ValueError)  # its own Failed, not its batch mate's
    assert isinstance(results[2], ConnectionError) and isinstance(results[3], ConnectionError)
    assert results[4:] == [140, 150]  # another batch: untouched by that error


async def test_a_cancelled_caller_leaves_its_batch_to_the_others() -> None:
    call = Gated()
    coalescer: Coalescer[int, int] = Coalescer(call, max_batch=8)
    tasks = [asyncio.create_task(coalescer.submit(i)) for i in range(3)]
    await call.wait_for_batches(1)
    tasks[1].cancel()
    call.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == 0 and results[2] == 20
    assert isinstance(results[1], asyncio.CancelledError)


async def test_items_arriving_after_a_flush_ended_start_a_new_one() -> None:
    call = Gated()
    call.release.set()
    coalescer: Coalescer[int, int] = Coalescer(call, max_batch=8)
    for round_ in range(3):
        assert await asyncio.gather(coalescer.submit(round_), coalescer.submit(9)) == [
            round_ * 10,
            90,
        ]
    assert call.batches == [[0, 9], [1, 9], [2, 9]]


async def test_a_cancelled_flush_cancels_the_items_no_flush_is_left_to_take() -> None:
    call = Gated()
    coalescer: Coalescer[int, int] = Coalescer(call, max_batch=1)
    tasks = [asyncio.create_task(coalescer.submit(i)) for i in range(3)]
    await call.wait_for_batches(1)
    flushes = [t for t in asyncio.all_tasks() if t.get_name() == "rag-coalescer"]
    assert len(flushes) == 1
    flushes[0].cancel()  # as at loop shutdown
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WAIT)
    assert all(isinstance(result, asyncio.CancelledError) for result in results)
    assert coalescer.flushing == 0
    call.release.set()
    assert await coalescer.submit(4) == 40  # and the coalescer still works


@pytest.mark.parametrize("max_batch", [0, 1])
async def test_max_batch_is_at_least_one(max_batch: int) -> None:
    call = Gated()
    call.release.set()
    coalescer: Coalescer[int, int] = Coalescer(call, max_batch=max_batch)
    assert await asyncio.gather(coalescer.submit(1), coalescer.submit(2)) == [10, 20]
    assert call.batches == [[1], [2]]
