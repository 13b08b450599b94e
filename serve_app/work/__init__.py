"""What the worker deployments do over the ArtifactStore, usable without Ray: the glue
between the library packages (pipeline, mesh tools) and the store."""
