"""langchain-rag-async: async-first RAG for LangChain and LangGraph."""
