"""The HybridRetriever inside an LCEL chain, with any LangChain chat model.

Run it from the project root:

    python examples/lcel_chain.py                    # offline: the extractive model
    RAG_LLM=openai OPENAI_API_KEY=sk-... python examples/lcel_chain.py   # ChatOpenAI
    RAG_LLM=openai OPENAI_BASE_URL=http://localhost:11434/v1 python examples/lcel_chain.py

``HybridRetriever`` is a LangChain ``BaseRetriever``: it composes with ``|`` like any
other. Here it feeds the package's answer prompt (numbered sources, cite as [n]), and
the chat model comes from the environment the way the engine picks it: the offline
``ExtractiveChatModel`` unless ``RAG_LLM=openai`` asks for ``ChatOpenAI`` (an API key
alone never switches to a paid API). Swap in any chat model object you like.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from langchain_rag_async import (
    ANSWER_PROMPT,
    AsyncDirectoryLoader,
    HybridRetriever,
    LocalMiniLMEmbeddings,
    RAGConfig,
    RunnableTextSplitter,
    build_chat_model,
)
from langchain_rag_async.prompts import format_sources

CORPUS = Path(__file__).resolve().parent / "corpus"


async def main(corpus: Path, question: str) -> None:
    # Load and split with the package's components (LangChain's work just as well).
    documents = await AsyncDirectoryLoader(corpus).aload()
    chunks = await RunnableTextSplitter().ainvoke(documents)

    # An in-memory hybrid retriever: FAISS (cosine) + SQLite FTS5 (BM25), fused.
    # `async with` closes the in-memory stores it owns.
    async with await HybridRetriever.afrom_documents(
        chunks, embedding=LocalMiniLMEmbeddings(), k=3
    ) as retriever:
        llm = build_chat_model(RAGConfig.from_env().llm)
        print(f"chat model: {type(llm).__name__}")

        def remember(docs: list[Document]) -> str:
            print("retrieved:", ", ".join(Path(d.metadata["source"]).name for d in docs))
            return format_sources(docs)  # "[1] (path) text ..." blocks, best first

        chain = (
            {"sources": retriever | RunnableLambda(remember), "question": RunnablePassthrough()}
            | ANSWER_PROMPT
            | llm
            | StrOutputParser()
        )
        print("answer:")
        async for piece in chain.astream(question):  # tokens as the model streams them
            print(piece, end="", flush=True)
        print()

        # The retriever also takes per-call settings, and reports its scores.
        best = (await retriever.ainvoke(question, k=1))[0]
        print(f"best chunk scores: {best.metadata['scores']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=CORPUS, help="folder to search")
    parser.add_argument("--question", default="How does a bounded queue create back-pressure?")
    args = parser.parse_args()
    asyncio.run(main(args.corpus, args.question))
