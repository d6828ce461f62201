"""Retrievers of langchain-rag-async."""
