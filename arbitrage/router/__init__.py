"""Router training: datasets from generate runs, fitting (neural and feature routers), evaluation, ablations."""
