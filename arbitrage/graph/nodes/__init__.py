"""One module per graph node: draft, router, PRM, target, commit."""
