"""embeddings of langchain-rag-async."""
