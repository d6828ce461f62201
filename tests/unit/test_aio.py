"""The one sync bridge (BlockingPortal, run_sync), the one per-loop binding and first_error."""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

from langchain_rag_async.aio import (
    BlockingPortal,
    LoopBound,
    cancel_on_signal,
    default_portal,
    first_error,
    run_sync,
)
from langchain_rag_async.aio import portal as portal_module
from langchain_rag_async.errors import Interrupted as SignalInterrupted
from langchain_rag_async.errors import UsageError

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    """A portal of the test's own, stopped afterwards (the default one is shared)."""
    own = BlockingPortal(name="test-portal")
    yield own
    own.stop()


async def double(value: int) -> int:
    await asyncio.sleep(0)
    return 2 * value


async def fail(message: str) -> None:
    await asyncio.sleep(0)
    raise KeyError(message)


# -- BlockingPortal / run_sync ------------------------------------------------------------


def test_call_returns_the_result_and_runs_on_the_portal_thread(portal: BlockingPortal) -> None:
    async def where() -> threading.Thread:
        return threading.current_thread()

    assert portal.call(double(21)) == 42
    assert portal.running and portal.call(where()) is portal.thread
    assert portal.thread is not None and portal.thread.daemon


def test_call_reraises_the_coroutines_own_exception(portal: BlockingPortal) -> None:
    with pytest.raises(KeyError, match="missing"):
        portal.call(fail("missing"))
    assert portal.call(double(1)) == 2  # the portal keeps serving after a failure


def test_run_sync_uses_the_one_default_portal() -> None:
    assert default_portal() is default_portal()
    assert run_sync(double(4)) == 8
    assert default_portal().running


def test_run_sync_works_from_inside_a_running_loop() -> None:
    async def notebook_cell() -> tuple[int, bool]:
        caller_loop = asyncio.get_running_loop()

        async def on_which_loop() -> bool:
            return asyncio.get_running_loop() is caller_loop

        return run_sync(double(5)), run_sync(on_which_loop())

    assert asyncio.run(notebook_cell()) == (10, False)  # ran, on the bridge's own loop


def test_contextvars_follow_the_call(portal: BlockingPortal) -> None:
    async def read_and_set() -> str:
        seen = REQUEST_ID.get()
        REQUEST_ID.set("changed on the portal")
        return seen

    token = REQUEST_ID.set("req-42")
    try:
        assert portal.call(read_and_set()) == "req-42"
        assert REQUEST_ID.get() == "req-42"  # the call ran in a copy of the context
    finally:
        REQUEST_ID.reset(token)


def test_a_call_from_the_portals_own_loop_is_refused(portal: BlockingPortal) -> None:
    async def reenter() -> int:
        return portal.call(double(1))  # would wait for itself forever

    with pytest.raises(UsageError, match="await the async twin"):
        portal.call(reenter())
    assert portal.call(double(3)) == 6  # and the portal is still fine


class Interrupted(BaseException):
    """Stands in for KeyboardInterrupt, without touching pytest's own SIGINT handling."""


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)
def test_interrupting_the_waiting_caller_cancels_the_task(portal: BlockingPortal) -> None:
    started = threading.Event()
    cancelled = threading.Event()

    async def long_work() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Interrupted

    def send_when_started() -> None:
        if started.wait(10):
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, interrupt)
    sender = threading.Thread(target=send_when_started)
    try:
        sender.start()
        with pytest.raises(Interrupted):
            portal.call(long_work())  # Ctrl-C while waiting
    finally:
        sender.join()
        signal.signal(signal.SIGUSR1, previous)
    assert cancelled.wait(10), "the interrupted call's task kept running"
    assert portal.call(double(2)) == 4


def test_an_interrupt_right_after_the_hand_over_still_cancels_the_task(
    portal: BlockingPortal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C can land on the bytecode right after the work was handed to the loop (seen
    in CI under load): the work has started by then and must still be cancelled."""
    started = threading.Event()
    cancelled = threading.Event()

    async def long_work() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    loop = portal.start()
    hand_over = loop.call_soon_threadsafe
    interrupts = iter([True])

    def hand_over_then_interrupt(callback: Any, *args: Any) -> Any:
        handle = hand_over(callback, *args)
        if next(interrupts, False):  # only the hand-over, not the cancellation that follows
            assert started.wait(10)
            raise Interrupted
        return handle

    monkeypatch.setattr(loop, "call_soon_threadsafe", hand_over_then_interrupt)
    with pytest.raises(Interrupted):
        portal.call(long_work())
    assert cancelled.wait(10), "the interrupted call's task kept running"
    assert portal.call(double(2)) == 4


def test_stop_is_idempotent_and_cancels_what_still_runs(portal: BlockingPortal) -> None:
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def spawn() -> None:
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)

    portal.call(spawn())
    thread = portal.thread
    portal.stop()
    portal.stop()
    assert cancelled.is_set()
    assert not portal.running and thread is not None and not thread.is_alive()
    BlockingPortal(name="never-started").stop()  # nothing to stop: fine too
    assert portal.call(double(7)) == 14  # a later call starts a fresh loop


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_fresh_locks_and_a_loop_of_its_own(portal: BlockingPortal) -> None:
    """A lock held by another thread at fork time must not deadlock the child.

    A worker process forked by uvicorn or gunicorn while a thread of the parent was
    starting a portal would otherwise wait for that lock forever.
    """
    assert portal.call(double(2)) == 4  # the parent's loop thread runs
    default_portal()
    held, release = threading.Event(), threading.Event()

    def hold_the_locks() -> None:
        with portal_module._default_lock, portal._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_locks)
    holder.start()
    assert held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # the child: both locks are copied held; it must still get answers
            code = 3
            try:
                signal.alarm(10)  # a deadlock kills the child instead of hanging the test
                code = 0 if portal.call(double(3)) == 6 and run_sync(double(4)) == 8 else 2
            finally:
                os._exit(code)
    finally:
        release.set()
        holder.join(10)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert portal.call(double(5)) == 10  # the parent's portal is untouched


def test_stop_from_the_portals_own_loop_is_refused(portal: BlockingPortal) -> None:
    async def stop_myself() -> None:
        portal.stop()

    with pytest.raises(UsageError, match="own loop thread"):
        portal.call(stop_myself())


# -- LoopBound ----------------------------------------------------------------------------


class Resource:
    """A stand-in for a loop-affine value (a lock, a connection)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()


def test_one_value_per_loop_created_lazily() -> None:
    bound: LoopBound[Resource] = LoopBound(Resource)
    assert bound.peek() is None and len(bound) == 0
    with pytest.raises(RuntimeError):
        bound.get()  # no running loop: asyncio's own error

    async def use() -> Resource:
        assert bound.peek() is None  # peek never creates
        first = bound.get()
        assert bound.get() is first and bound.peek() is first
        assert first.loop is asyncio.get_running_loop()
        return first

    one = asyncio.run(use())
    two = asyncio.run(use())
    assert one is not two


def test_values_of_closed_loops_are_handed_back_once() -> None:
    bound: LoopBound[Resource] = LoopBound(Resource)

    async def use() -> Resource:
        return bound.get()

    old = asyncio.run(use())  # its loop is closed now
    assert bound.live() == []
    assert bound.pop_stale() == [old]
    assert bound.pop_stale() == [] and len(bound) == 0


def test_live_lists_open_loops_and_pop_all_empties(portal: BlockingPortal) -> None:
    bound: LoopBound[Resource] = LoopBound(Resource)

    async def use() -> Resource:
        return bound.get()

    on_portal = portal.call(use())
    closed = asyncio.run(use())
    assert bound.live() == [(on_portal.loop, on_portal)]
    pairs = bound.pop_all()
    assert {id(value) for _, value in pairs} == {id(on_portal), id(closed)}
    assert len(bound) == 0 and bound.live() == []


# -- first_error --------------------------------------------------------------------------


def test_first_error_of_a_plain_exception_is_itself() -> None:
    error = ValueError("plain")
    assert first_error(error) is error


def test_first_error_digs_through_nested_groups() -> None:
    leaf = KeyError("deep")
    group = BaseExceptionGroup("outer", [ExceptionGroup("inner", [leaf]), ValueError("later")])
    assert first_error(group) is leaf


def test_first_error_skips_cancellations() -> None:
    leaf = OSError("the real one")
    group = BaseExceptionGroup(
        "outer",
        [asyncio.CancelledError(), BaseExceptionGroup("inner", [asyncio.CancelledError(), leaf])],
    )
    assert first_error(group) is leaf


def test_first_error_of_only_cancellations_is_the_first_of_them() -> None:
    first = asyncio.CancelledError("first")
    group = BaseExceptionGroup("all cancelled", [first, asyncio.CancelledError("second")])
    assert first_error(group) is first


async def test_first_error_of_a_failed_task_group() -> None:
    async def sleeper() -> None:
        await asyncio.sleep(60)

    with pytest.raises(ExceptionGroup) as info:
        async with asyncio.TaskGroup() as group:
            group.create_task(sleeper())
            group.create_task(fail("boom"))
    error = first_error(info.value)
    assert isinstance(error, KeyError) and error.args == ("boom",)


def test_a_coroutine_cancelled_on_the_portal_raises_instead_of_hanging() -> None:
    from langchain_rag_async.aio import run_sync

    async def cancels_itself() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(1)

    with pytest.raises(asyncio.CancelledError):
        run_sync(cancels_itself())


# -- cancel_on_signal ------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_cancels_the_block_which_unwinds_then_raises_interrupted(
    signum: signal.Signals,
) -> None:
    unwound = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            unwound.set()

    with pytest.raises(SignalInterrupted) as caught:
        async with cancel_on_signal():
            asyncio.get_running_loop().call_later(0.05, signal.raise_signal, signum)
            await work()
    assert caught.value.signum == signum
    assert unwound.is_set()
    # the handlers are gone: the loop no longer owns the signal
    assert not asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)


async def test_a_block_that_finishes_is_left_alone_and_other_cancellations_pass() -> None:
    async with cancel_on_signal():
        await asyncio.sleep(0)

    async def cancelled_from_outside() -> None:
        async with cancel_on_signal():
            await asyncio.sleep(30)

    task = asyncio.create_task(cancelled_from_outside())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_handlers_from_before_the_block_are_put_back() -> None:
    # asyncio's remove_signal_handler resets a signal to Python's default: an application's
    # own SIGTERM handler would be lost after the first block
    def mine(signum: int, frame: object) -> None:  # pragma: no cover - never delivered
        pass

    interrupt_before = signal.getsignal(signal.SIGINT)
    previous = signal.signal(signal.SIGTERM, mine)
    try:
        async with cancel_on_signal():
            assert signal.getsignal(signal.SIGTERM) is not mine  # the loop's, for the block
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is interrupt_before
    finally:
        signal.signal(signal.SIGTERM, previous)


async def test_a_signal_the_process_was_started_ignoring_is_handled_in_the_block() -> None:
    # a background job (``cmd &`` in a script) starts with SIGINT ignored: the block still
    # stops on it (a harness or a supervisor sends it on purpose), and after the block it
    # is ignored again
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(SignalInterrupted):
            async with cancel_on_signal():
                asyncio.get_running_loop().call_later(0.05, signal.raise_signal, signal.SIGINT)
                await asyncio.sleep(30)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
