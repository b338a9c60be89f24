"""Model backends behind the Generator / PRM / Router protocols, and server management."""
