"""Models: loading, the registry, the singleton manager and per-architecture adapters."""
