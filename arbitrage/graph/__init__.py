"""The speculative-reasoning loop as a LangGraph state graph."""
