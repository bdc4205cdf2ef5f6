"""The `[ray]` table of the server config: run the same app as N Ray Serve replicas behind one ingress."""

from __future__ import annotations

import dataclasses
from typing import Any

from infopt._config import check_int, check_number, check_str, field_error

__all__ = ["RayConfig"]


@dataclasses.dataclass(frozen=True)
class RayConfig:
    """Replicas on Ray Serve (`infopt serve --replicas N`); 0 replicas: the single-process server."""

    replicas: int = 0
    """Model replicas (each a process with every model, its batcher and its cache front); 0: no Ray."""
    address: str | None = None
    """The Ray cluster to join (`ray://host:10001` or `auto`); None starts a local one on this machine."""
    min_replicas: int | None = None
    """With max_replicas: autoscale between these two instead of a fixed count."""
    max_replicas: int | None = None
    """Most replicas when autoscaling."""
    target_ongoing_requests: float = 8.0
    """Autoscaling target: requests in flight per replica."""
    max_ongoing_requests: int = 64
    """Most requests Ray sends one replica at once (its own queue limit still applies behind that)."""
    num_cpus: float = 1.0
    """CPUs Ray reserves per replica (replicas that do not fit wait for a node that has them)."""
    threads: int = 0
    """torch / ONNX Runtime threads per replica; 0: this machine's cores divided by the replicas (at least 1)."""

    def __post_init__(self) -> None:
        check_int(self, "replicas", min=0)
        check_str(self, "address", optional=True, allowed='a Ray address such as "auto" or "ray://host:10001"')
        check_int(self, "min_replicas", min=0, optional=True)
        check_int(self, "max_replicas", min=1, optional=True)
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise field_error(self, "max_replicas", self.max_replicas, "set together with min_replicas (autoscaling)")
        if self.min_replicas is not None and self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise field_error(self, "min_replicas", self.min_replicas, f"at most max_replicas = {self.max_replicas}")
        check_number(self, "target_ongoing_requests", low=0, bounds="(]", example=8)
        check_int(self, "max_ongoing_requests", min=1)
        check_number(self, "num_cpus", low=0, example=1)
        check_int(self, "threads", min=0)

    @property
    def enabled(self) -> bool:
        """Whether the server runs on Ray (a replica count or an autoscaling range is set)."""
        return self.replicas > 0 or self.max_replicas is not None

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments of `serve.deployment`: a fixed count, or Ray's autoscaling settings."""
        scale: dict[str, Any] = {"num_replicas": self.replicas}
        if self.max_replicas is not None:
            scale = {"autoscaling_config": {"min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                                            "target_ongoing_requests": self.target_ongoing_requests}}
        return {**scale, "max_ongoing_requests": self.max_ongoing_requests,
                "ray_actor_options": {"num_cpus": self.num_cpus}}

    def threads_per_replica(self, cores: int) -> int:
        """The `threads` setting, or the cores shared out among the (most) replicas."""
        most = self.max_replicas if self.max_replicas is not None else self.replicas
        return self.threads or max(1, cores // max(1, most))
