"""indexing of langchain-rag-async."""
