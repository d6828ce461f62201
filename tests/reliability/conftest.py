"""The chaos suite: scenarios from ``benchmarks.reliability`` with a few trials each.

Tests marked ``chaos`` are the long ones (``make chaos``); the others are the fast subset
that ``make test`` runs. The CLI runs in subprocesses, so the blocking-call guard (which
watches this process's event loop) does not apply to them.
"""
