"""Which upstream a request is for: containerd's `ns=`, a host prefix in the path, or the first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mirror.errors import NameUnknown
from mirror.reference import parse_repository
from mirror.upstream.client import UpstreamRegistry


@dataclass(frozen=True, slots=True)
class Target:
    upstream: UpstreamRegistry
    repo: str  # normalised: library/ added for Docker Hub's one-component names
    namespace: str | None  # the ns= value to echo back as OCI-Namespace


class UpstreamRouter:
    def __init__(self, upstreams: Sequence[UpstreamRegistry]) -> None:
        self.upstreams = tuple(upstreams)
        self._by_name = {upstream.name: upstream for upstream in upstreams}

    @property
    def default(self) -> UpstreamRegistry:
        return self.upstreams[0]

    def get(self, name: str) -> UpstreamRegistry | None:
        return self._by_name.get(name)

    def route(self, name: str, namespace: str | None) -> Target:
        """Pick the upstream and validate the repository name against its rules.

        An `ns` no upstream stands for is refused: the mirror is not an open proxy.
        """
        if namespace is not None:
            upstream = self._by_name.get(namespace)
            if upstream is None:
                raise NameUnknown(f"no upstream is configured for registry {namespace[:100]!r}")
            # containerd adds ns= even when the mirror address carries the registry as a
            # path prefix (`mirror:5000/ghcr.io`): the prefix then names the same registry.
            first, _, rest = name.partition("/")
            if first == namespace and rest:
                name = rest
            return Target(
                upstream, parse_repository(name, upstream.config.is_docker_hub), namespace
            )
        first, _, rest = name.partition("/")
        prefixed = self._by_name.get(first)
        # A host-like first component (`ghcr.io/owner/repo`) names the registry: repository
        # names cannot contain dots in their first component on Docker Hub anyway.
        if prefixed is not None and rest and ("." in first or ":" in first):
            return Target(prefixed, parse_repository(rest, prefixed.config.is_docker_hub), None)
        upstream = self.default
        return Target(upstream, parse_repository(name, upstream.config.is_docker_hub), None)
