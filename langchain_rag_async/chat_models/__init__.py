"""Chat models of langchain-rag-async."""
