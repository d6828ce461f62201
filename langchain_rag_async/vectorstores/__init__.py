"""vectorstores of langchain-rag-async."""
