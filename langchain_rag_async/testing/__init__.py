"""testing of langchain-rag-async."""
