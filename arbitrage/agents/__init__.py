"""Ways for agents and agent tooling to reach Arbitrage: an OpenAI-compatible endpoint
(pipeline_server), a LangChain chat model (chat_model), and LangGraph's own server
(deployment); all three share loaded, batched models through reasoner."""
