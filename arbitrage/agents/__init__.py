"""Ways for agents and agent tooling to reach Arbitrage: LangGraph's own server (deployment)."""
