"""Drop-in: AsyncFAISS where your code used LangChain's FAISS (same calls, same results).

Run it from the project root:

    python examples/faiss_drop_in.py
    python examples/faiss_drop_in.py ~/notes --work-dir /tmp/faiss-demo

The code below is what a LangChain FAISS user has today (DirectoryLoader,
RecursiveCharacterTextSplitter, FAISS.from_documents, save_local, load_local) with one
change: the class. ``AsyncFAISS`` subclasses ``FAISS``, so its signatures are the same;
what differs is that the async methods really are async (the FAISS work runs in an
executor, never on the event loop), writes are safe next to concurrent searches, and
``save_local`` writes a pickle-free, checksummed folder that ``load_local`` reads without
``allow_dangerous_deserialization``. The local model stands in for ``OpenAIEmbeddings``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from langchain_community.document_loaders import DirectoryLoader, TextLoader
from langchain_community.vectorstores import FAISS
from langchain_core.documents import Document
from langchain_text_splitters import RecursiveCharacterTextSplitter

from langchain_rag_async import AsyncFAISS, LocalMiniLMEmbeddings

CORPUS = Path(__file__).resolve().parent / "corpus"
QUESTION = "What happens when a task is cancelled?"


def ids(docs: list[Document]) -> str:
    return " ".join(str(doc.id) for doc in docs)


async def main(corpus: Path, work_dir: Path) -> None:
    save_dir = work_dir / "faiss"
    # -- your code today, unchanged ----------------------------------------------------
    loader = DirectoryLoader(str(corpus), glob="**/*.md", loader_cls=TextLoader)
    docs = await loader.aload()
    splitter = RecursiveCharacterTextSplitter(chunk_size=400, chunk_overlap=50)
    chunks = splitter.split_documents(docs)
    for number, chunk in enumerate(chunks):  # stable ids, so the two stores can be compared
        chunk.id = f"chunk-{number}"
    embeddings = LocalMiniLMEmbeddings()  # was: OpenAIEmbeddings()
    print(f"{len(docs)} files, {len(chunks)} chunks")

    # -- the one change: AsyncFAISS instead of FAISS ---------------------------------------
    store = await AsyncFAISS.afrom_documents(chunks, embeddings)  # was: FAISS.from_documents
    hits = await store.asimilarity_search(QUESTION, k=4)
    print(f"AsyncFAISS ids: {ids(hits)}")
    print(f"top source: {hits[0].metadata['source']}")

    # save_local / load_local: same calls; no pickle, so no allow_dangerous_deserialization.
    store.save_local(str(save_dir))
    loaded = AsyncFAISS.load_local(str(save_dir), embeddings)
    print(f"after load_local ids: {ids(await loaded.asimilarity_search(QUESTION, k=4))}")
    print(f"saved files: {' '.join(sorted(p.name for p in save_dir.iterdir()))}")

    # -- the same vectors in LangChain's own FAISS give the same neighbours ----------------
    # (read back from the FAISS index, so nothing is embedded twice)
    vectors = store.index.reconstruct_n(0, store.index.ntotal).tolist()
    order = [store.index_to_docstore_id[i] for i in range(store.index.ntotal)]
    by_id = {str(doc.id): doc for doc in await store.aget_by_ids(order)}
    reference = FAISS.from_embeddings(
        [(by_id[i].page_content, vector) for i, vector in zip(order, vectors, strict=True)],
        embeddings,
        metadatas=[by_id[i].metadata for i in order],
        ids=order,
    )
    query = await embeddings.aembed_query(QUESTION)
    print(f"LangChain FAISS ids: {ids(reference.similarity_search_by_vector(query, k=4))}")
    # Scores: similarity_search_with_score gives the same raw L2 distances as FAISS; the
    # *relevance* scores of AsyncFAISS lie in [0, 1] for every distance strategy.
    (_, distance), *_ = await store.asimilarity_search_with_score(QUESTION, k=1)
    (_, relevance), *_ = await store.asimilarity_search_with_relevance_scores(QUESTION, k=1)
    print(f"best distance {distance:.4f}, relevance {relevance:.4f}")

    # -- an existing pickled LangChain folder: read it once (opt-in), save it converted ----
    # (only for folders you trust: reading a pickle can run arbitrary code)
    old, new = work_dir / "langchain-faiss", work_dir / "converted-faiss"
    reference.save_local(str(old))  # index.faiss + index.pkl, as your code wrote it
    legacy = AsyncFAISS.load_local(str(old), embeddings, allow_dangerous_deserialization=True)
    legacy.save_local(str(new))  # the pickle-free format, read without any opt-in
    reopened = AsyncFAISS.load_local(str(new), embeddings)
    print(f"converted folder ids: {ids(await reopened.asimilarity_search(QUESTION, k=4))}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=CORPUS, help="folder to index")
    parser.add_argument(
        "--work-dir", type=Path, help="where the three saved folders go (default: a temp dir)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rag-faiss-") as scratch:
        asyncio.run(main(args.corpus, args.work_dir or Path(scratch)))
