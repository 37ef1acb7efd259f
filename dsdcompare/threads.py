"""CPU thread policy: how many torch threads, and whether idle OpenMP threads spin or sleep.

Decided from measurements under contention, not on a quiet machine (``benchmarks/contention.py``
measures it; the figures are in its output). On a CPU shared with other work, every OpenMP
parallel region waits for its slowest thread: a thread that loses its core stalls the whole
call, and the slow calls hide in the median. So the policy leaves cores free for the rest of the
machine (the Streamlit server, a browser, other processes): ``threads = max(1, cores // 2)``,
and with more than one thread idle OpenMP workers *sleep* (``OMP_WAIT_POLICY=PASSIVE``) instead
of spinning on cores other work needs. ``DSDCOMPARE_THREADS=N`` overrides the count.

``OMP_WAIT_POLICY`` is read once, when torch loads its OpenMP runtime: :func:`apply` sets it only
if torch is not imported yet and says so in the policy it returns.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace

from .errors import InputError
from .limits import THREADS

#: Environment variable that overrides the thread count.
THREADS_ENV = "DSDCOMPARE_THREADS"


@dataclass(frozen=True)
class ThreadPolicy:
    """The CPU threading a process runs with (recorded in every result's environment)."""

    threads: int  # torch intra-op threads
    wait_policy: str  # OMP_WAIT_POLICY for the OpenMP runtime: "PASSIVE" (sleep) or "ACTIVE" (spin)
    reason: str  # why, in one sentence
    applied_wait_policy: bool = True  # False: torch was imported first, the runtime kept its own

    def as_env(self) -> dict:
        """The fields recorded with every Result."""
        return {"thread_policy": self.reason, "torch_threads": self.threads,
                "omp_wait_policy": self.wait_policy if self.applied_wait_policy
                else os.environ.get("OMP_WAIT_POLICY") or "runtime default"}


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; the whole machine where unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def decide(cores: int | None = None, *, requested: int | None = None,
           env: dict | None = None) -> ThreadPolicy:
    """The policy for a process that may use ``cores`` cores.

    ``requested`` (``--threads``) wins, then ``$DSDCOMPARE_THREADS``, then half the usable cores
    (at least one). More than one thread sleeps when idle (PASSIVE); one thread has no workers
    to wait, and keeps the runtime's default.
    """
    env = os.environ if env is None else env
    cores = usable_cores() if cores is None else cores
    if requested is not None:
        threads, why = THREADS.check(requested), f"{requested} thread(s) as asked (--threads)"
    elif env.get(THREADS_ENV, "").strip():
        try:
            threads = THREADS.parse(env[THREADS_ENV])
        except InputError as err:
            raise InputError(f"{THREADS_ENV}: {err}") from None
        why = f"{threads} thread(s) from ${THREADS_ENV}"
    else:
        threads = max(1, cores // 2)
        why = (f"{threads} of {cores} cores: a shared CPU stalls every parallel region on its "
               f"slowest thread, so half the cores are left to other work")
    wait = "PASSIVE" if threads > 1 else (env.get("OMP_WAIT_POLICY") or "PASSIVE")
    return ThreadPolicy(threads, wait.upper(), why)


def apply(policy: ThreadPolicy) -> ThreadPolicy:
    """Put ``policy`` in force for this process; return it as applied.

    The wait policy can only be set before torch is imported; afterwards the returned policy
    says it was not applied (and records what the runtime has).
    """
    applied = "torch" not in sys.modules
    if applied:
        os.environ["OMP_WAIT_POLICY"] = policy.wait_policy
    import torch

    if torch.get_num_threads() != policy.threads:
        torch.set_num_threads(policy.threads)
    global _applied
    _applied = replace(policy, applied_wait_policy=applied)
    return _applied


_applied: ThreadPolicy | None = None


def current() -> dict:
    """The threading in force, for a Result's environment: torch's thread count now, the
    OpenMP wait policy, and the policy's reason (or that dsdcompare set none)."""
    import torch

    env = {"torch_threads": torch.get_num_threads(),
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY") or "runtime default",
           "thread_policy": "not set by dsdcompare"}
    if _applied is not None:
        env.update({k: v for k, v in _applied.as_env().items() if k != "torch_threads"})
    return env
