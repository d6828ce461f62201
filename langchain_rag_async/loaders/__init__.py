"""loaders of langchain-rag-async."""
