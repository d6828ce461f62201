"""LangGraph graphs that deployments load (see langgraph.json)."""
