"""The LangGraph graphs, streamed: indexing progress on ``custom``, answers on
``updates`` and ``messages``.

Run it from the project root:

    python examples/stream_graphs.py
    python examples/stream_graphs.py ~/notes --question "..."

The two graphs are ordinary compiled LangGraph graphs (the same ones ``langgraph.json``
deploys), so every LangGraph stream mode works on them:

- the indexing graph (``plan`` → ``index``) writes progress events to ``custom``
  (``{"type": "plan", ...}``, then ``{"type": "progress", "stage": ...}``) and its
  summary to the final ``values``;
- the answer graph (``rewrite`` → ``retrieve`` → ``generate``) puts each node's result on
  ``updates`` (the numbered sources come from ``retrieve``) and the chat model's tokens
  on ``messages``. It writes nothing to ``custom``.

Runtime objects (retriever, chat model, settings) travel in the run's ``context``,
never in the (checkpointable) state.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from langchain_core.messages import AIMessage, HumanMessage

from langchain_rag_async import (
    AnswerContext,
    AsyncRAGEngine,
    IndexingContext,
    RAGConfig,
    build_answer_graph,
    build_indexing_graph,
)

CORPUS = Path(__file__).resolve().parent / "corpus"


async def index(corpus: Path, index_dir: Path) -> None:
    graph = build_indexing_graph()
    context = IndexingContext(config=RAGConfig(index_dir=index_dir))
    run = {"path": str(corpus), "index_dir": str(index_dir)}
    stage = None
    async for mode, chunk in graph.astream(run, context=context, stream_mode=["custom", "values"]):
        if mode == "custom" and chunk["type"] == "plan":
            print(f"custom   plan: {chunk['files_to_load']} files to load")
        elif mode == "custom" and chunk["stage"] != stage:  # stages interleave: they overlap
            stage = chunk["stage"]
            print(f"custom   {stage:<5} {chunk['chunks_stored']}/{chunk['chunks_total']} stored")
        elif mode == "values" and "summary" in chunk:
            print(f"values   summary: {chunk['summary']['chunks_added']} chunks added")


async def answer(context: AnswerContext, question: str, history: list) -> None:
    graph = build_answer_graph()
    run = {"question": question, "history": history}
    modes = ["updates", "messages", "custom"]
    tokens = 0
    async for mode, chunk in graph.astream(run, context=context, stream_mode=modes):
        if mode == "updates":
            for node, update in chunk.items():  # one node's returned state
                if node == "retrieve":
                    names = [f"[{s['n']}] {Path(s['source']).name}" for s in update["sources"]]
                    print(f"updates  retrieve: {', '.join(names)}")
                elif node == "rewrite":
                    print(f"updates  rewrite: searched {update['search_query']!r}")
                else:
                    print(f"\nupdates  {node}: {len(update.get('answer') or '')} characters")
        elif mode == "messages":
            message, metadata = chunk  # a chat model chunk and where it came from
            if metadata["langgraph_node"] == "generate" and message.content:
                tokens += 1
                print(message.content, end="", flush=True)
        else:  # "custom": this graph writes none; your own nodes could
            print(f"custom   {chunk}")
    print(f"messages {tokens} chunks streamed")


async def main(corpus: Path, index_dir: Path, question: str) -> None:
    await index(corpus, index_dir)
    # The engine opens the saved index and hands out its retriever and chat model.
    async with AsyncRAGEngine(index_dir=index_dir) as engine:
        context = AnswerContext(retriever=await engine.aretriever(), llm=await engine.allm(), k=3)
        print(f"\nQ: {question}")
        await answer(context, question, history=[])
        # A follow-up with history goes through `rewrite` first (a model that cannot
        # condense questions, like the extractive one, searches the question as asked).
        follow_up = "And how do I stop it from hanging?"
        print(f"\nQ: {follow_up}")
        history = [HumanMessage(question), AIMessage("Cancelling throws CancelledError.")]
        await answer(context, follow_up, history=history)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=CORPUS, help="folder to index")
    parser.add_argument("--question", default="What happens when a task is cancelled?")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rag-graphs-") as scratch:
        asyncio.run(main(args.corpus, Path(scratch), args.question))
