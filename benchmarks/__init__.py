"""Benchmarks of langchain-rag-async: shared helpers plus one module per benchmark.

``indexing`` (run by ``scripts/bench_async.py``) measures indexing throughput against
LangChain; ``retrieval`` (run by ``scripts/eval_retrieval.py``) measures retrieval quality and
latency on BEIR SciFact. The helpers they share: ``corpus`` (the data sets), ``fake_openai``
(the local OpenAI-compatible server's client side), ``timing`` (event-loop stalls, garbage
collection pauses, fresh event loops) and ``report`` (tables and PASS/FAIL verdicts). Not part
of the installed package: the scripts put the project root on ``sys.path``.
"""

from __future__ import annotations

__all__ = ()
