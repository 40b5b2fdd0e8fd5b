"""mirror: a pull-through caching proxy for Docker Hub and other OCI registries."""

__version__ = "0.1.0"
