"""Deployment settings: the only copy of each default, checked where they are built."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from frugalml.errors import check_ranges

# Where the image keeps the bundle, the port `serve` listens on in it, and a writable home (the
# lineage store) under /tmp, the one writable folder (an emptyDir in the Kubernetes manifests).
BUNDLE_DIR = "/app/bundle"
PORT = 8000
HOME = "/tmp/frugalml"
UID = 10001  # the image's non-root user and group

# Kubernetes quantities: CPU in cores or millicores ("2", "0.5", "500m"), memory in bytes with a
# binary or decimal suffix ("2Gi", "512Mi", "1G").
_CPU = re.compile(r"^(\d+(\.\d+)?|\d+m)$")
_RELEASE = re.compile(r"\d+\.\d+\.\d+")
_MEMORY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$")


def resource_name(bundle_name: str) -> str:
    """A bundle's name as a Kubernetes resource name and image name: lowercase letters, digits and
    '-', starting and ending with a letter or digit, at most 40 characters (room for suffixes)."""
    name = re.sub(r"[^a-z0-9]+", "-", bundle_name.lower()).strip("-")[:40].strip("-")
    return name or "frugalml"


def default_image(bundle_name: str, bundle_id: str) -> str:
    return f"{resource_name(bundle_name)}:{bundle_id}"


@dataclass(frozen=True)
class DockerConfig:
    # The slim base image's Python: this one's, which constraints.txt was taken from (3.11 or newer).
    python: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    torch: str | None = None  # from PyTorch's CPU wheel index (no CUDA libraries); default: this one's
    wheel: str | None = None  # a frugalml wheel to install; default: frugalml from the package index
    drain_s: int = 8  # serve --drain: finishes within `docker stop`'s default 10 s before SIGKILL

    def __post_init__(self) -> None:
        check_ranges(
            "docker",
            self,
            {
                "python": (re.fullmatch(r"3\.(1[1-9]|[2-9]\d)", self.python) is not None, "python 3.11+"),
                "torch": (
                    self.torch is None or _RELEASE.fullmatch(self.torch) is not None,
                    "torch X.Y.Z",
                ),
                "drain_s": (self.drain_s >= 0, "drain_s >= 0"),
            },
        )


@dataclass(frozen=True)
class K8sConfig:
    image: str | None = None  # default: the tag `frugalml deploy docker` suggests for the bundle
    replicas: int = 2  # the HorizontalPodAutoscaler's floor
    max_replicas: int | None = None  # its ceiling; default 4 x replicas
    cpu: str = "2"  # requested and limited per pod; also sizes serve's threads
    memory: str = "2Gi"
    gpu: int = 0  # nvidia.com/gpu per pod (needs an image with CUDA torch)
    target_cpu_percent: int = 70  # the autoscaler's CPU target
    drain_s: int = 25  # serve --drain: in-flight requests finish within it after SIGTERM
    pre_stop_s: int = 5  # time for endpoints to drop the pod before SIGTERM

    def __post_init__(self) -> None:
        check_ranges(
            "k8s",
            self,
            {
                "replicas": (self.replicas >= 1, "replicas >= 1"),
                "max_replicas": (
                    self.max_replicas is None or self.max_replicas >= self.replicas,
                    "max_replicas >= replicas",
                ),
                "cpu": (_CPU.fullmatch(self.cpu) is not None and self.cores > 0, "cpu like 2, 0.5 or 500m"),
                "memory": (_MEMORY.fullmatch(self.memory) is not None, "memory like 2Gi or 512Mi"),
                "gpu": (self.gpu >= 0, "gpu >= 0"),
                "target_cpu_percent": (0 < self.target_cpu_percent <= 100, "0 < target_cpu_percent <= 100"),
                "drain_s": (self.drain_s >= 0, "drain_s >= 0"),
                "pre_stop_s": (self.pre_stop_s >= 0, "pre_stop_s >= 0"),
            },
        )

    @property
    def cores(self) -> float:
        """The CPU quantity in cores (0 when it does not parse)."""
        if not _CPU.fullmatch(self.cpu):
            return 0.0
        return int(self.cpu[:-1]) / 1000 if self.cpu.endswith("m") else float(self.cpu)

    @property
    def ceiling(self) -> int:
        return self.max_replicas or 4 * self.replicas
