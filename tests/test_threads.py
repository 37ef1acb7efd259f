"""The thread policy's decision, and the contended flag with a real competitor."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import pytest

from dsdcompare import threads
from dsdcompare.errors import InputError
from dsdcompare.timing import CONTENDED_FRACTION, StageTimes, contention


def test_policy_leaves_half_the_cores_and_sleeps_idle_workers():
    assert threads.decide(2, env={}).threads == 1
    assert threads.decide(1, env={}).threads == 1
    p16 = threads.decide(16, env={})
    assert p16.threads == 8 and p16.wait_policy == "PASSIVE" and "8 of 16 cores" in p16.reason


def test_asked_threads_win_then_the_environment():
    assert threads.decide(2, requested=4, env={threads.THREADS_ENV: "3"}).threads == 4
    assert threads.decide(2, env={threads.THREADS_ENV: "3"}).threads == 3
    with pytest.raises(InputError, match=r"DSDCOMPARE_THREADS: threads must be an integer, got 'many'"):
        threads.decide(2, env={threads.THREADS_ENV: "many"})
    with pytest.raises(InputError, match="threads must be an integer from 1 to 256, got 0"):
        threads.decide(2, requested=0, env={})


def test_one_thread_keeps_an_explicit_wait_policy():
    assert threads.decide(2, env={"OMP_WAIT_POLICY": "active"}).wait_policy == "ACTIVE"


def test_environment_records_the_policy():
    from dsdcompare.environment import environment

    env = environment("cpu")
    assert {"torch_threads", "omp_wait_policy", "thread_policy"} <= set(env)


def test_contention_rule_on_cpu_only():
    quiet = [StageTimes(total=1.0, cpu=0.97)] * 3
    busy = [StageTimes(total=1.0, cpu=0.3)] * 3
    assert contention(quiet, "cpu", 1) == (pytest.approx(0.97), False)
    assert contention(busy, "cpu", 1) == (pytest.approx(0.3), True)
    assert contention(busy, "cuda:0", 1) == (None, None)  # CPU time says nothing about a GPU
    # two threads that together get one core are contended too
    assert contention([StageTimes(total=1.0, cpu=0.9)], "cpu", 2)[1] is True
    assert CONTENDED_FRACTION == 0.5


def _burn(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


def _spin_for(seconds: float) -> StageTimes:
    start, cpu0 = time.perf_counter(), time.process_time()
    x = 0
    while time.perf_counter() - start < seconds:
        x += 1
    return StageTimes(total=time.perf_counter() - start, cpu=time.process_time() - cpu0)


def test_a_real_competitor_on_our_core_is_flagged():
    # pin this process and the competitors to one core, so the competition is certain
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs sched_setaffinity (Linux)")
    saved = os.sched_getaffinity(0)
    core = min(saved)
    os.sched_setaffinity(0, {core})
    competitors = []
    try:
        quiet = [_spin_for(0.3)]
        stop_at = time.time() + 20  # bounded even if the test dies
        ctx = mp.get_context("fork")
        competitors = [ctx.Process(target=_burn, args=(stop_at,), daemon=True) for _ in range(3)]
        for c in competitors:
            c.start()  # inherits the one-core affinity
        time.sleep(0.2)
        busy = [_spin_for(1.0)]
    finally:
        for c in competitors:
            c.terminate()
            c.join(5)
        os.sched_setaffinity(0, saved)
    q_ratio, q_flag = contention(quiet, "cpu", 1)
    b_ratio, b_flag = contention(busy, "cpu", 1)
    assert b_flag is True and b_ratio < 0.5, (q_ratio, b_ratio)
    assert b_ratio < q_ratio
