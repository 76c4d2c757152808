"""`frugalml deploy k8s`: Kubernetes and KServe manifests that run the image `deploy docker` builds.

Three files, each of several documents:
- `serve.yaml`: Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget;
- `monitoring.yaml`: a ServiceMonitor (Prometheus Operator) scraping /metrics, and a
  PrometheusRule with the alert rules `frugalml monitor rules` writes (monitor/rules.py);
- `kserve.yaml`: a ServingRuntime and an InferenceService on the Open Inference Protocol (v2), an
  alternative to `serve.yaml` where KServe runs the models.

Probes use the routes `serve` has: /healthz (alive once the models are loaded: uvicorn only
listens after warm-up) and /readyz (503 from the moment SIGTERM arrives). Shutting down, the pod
first sleeps in preStop while endpoints stop sending it traffic, then SIGTERM makes `serve` refuse
new requests and finish the ones in flight within --drain seconds, all within the grace period.
"""

from __future__ import annotations

import math
from pathlib import Path

from frugalml.bundle import Bundle
from frugalml.deploy.config import BUNDLE_DIR, HOME, PORT, UID, K8sConfig, default_image, resource_name
from frugalml.deploy.output import Written, write_folder, yaml_documents
from frugalml.monitor.rules import rules_document

LIVENESS = "/healthz"
READINESS = "/readyz"
METRICS = "/metrics"
KSERVE_PORT = 8080  # the port KServe sends a runtime's HTTP traffic to
GRACE_MARGIN_S = 5  # past preStop and the drain, before the kubelet's SIGKILL


def serve_args(config: K8sConfig, model: str, port: int) -> list[str]:
    """`frugalml serve` for a pod: on every interface, with threads sized to the pod's CPU (inside
    a container the process sees every core of the node, not its limit), on the GPU it asks for."""
    cores = max(1, math.floor(config.cores))
    parallel = min(2, cores)
    threads = max(1, (cores - 1) // parallel)
    return [
        "serve",
        model,
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        "--parallel",
        str(parallel),
        "--threads",
        str(threads),
        "--drain",
        str(config.drain_s),
        "--device",
        "cuda" if config.gpu else "cpu",
    ]


def _resources(config: K8sConfig) -> dict:
    limits: dict = {"cpu": config.cpu, "memory": config.memory}
    if config.gpu:
        limits["nvidia.com/gpu"] = config.gpu
    return {"requests": {"cpu": config.cpu, "memory": config.memory}, "limits": limits}


def _probe(path: str, period_s: int, failures: int) -> dict:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period_s,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def container(config: K8sConfig, image: str) -> dict:
    return {
        "name": "frugalml",
        "image": image,
        "args": serve_args(config, BUNDLE_DIR, PORT),
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [{"name": "FRUGALML_HOME", "value": HOME}],
        "resources": _resources(config),
        # Loading and warming up may take minutes on a cold node: up to 5 before the pod restarts.
        "startupProbe": _probe(LIVENESS, 2, 150),
        "readinessProbe": _probe(READINESS, 5, 2),
        "livenessProbe": _probe(LIVENESS, 10, 3),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(config.pre_stop_s)]}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def _pod_spec(config: K8sConfig, containers: list[dict]) -> dict:
    spec: dict = {
        "terminationGracePeriodSeconds": config.pre_stop_s + config.drain_s + GRACE_MARGIN_S,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if config.gpu:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return spec


def serve_manifests(bundle: Bundle, config: K8sConfig) -> list[dict]:
    name = resource_name(bundle.name)
    image = config.image or default_image(bundle.name, bundle.id)
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "inference"}
    selector = {"matchLabels": labels}
    metadata = {"name": name, "labels": {**labels, "frugalml.io/bundle": bundle.id}}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": config.replicas,
            "selector": selector,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": metadata["labels"]},
                "spec": _pod_spec(config, [container(config, image)]),
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "selector": labels,
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    autoscaler = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": config.replicas,
            "maxReplicas": config.ceiling,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": config.target_cpu_percent},
                    },
                }
            ],
        },
    }
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata,
        "spec": {"maxUnavailable": 1, "selector": selector},
    }
    return [deployment, service, autoscaler, budget]


def monitoring_manifests(bundle: Bundle) -> list[dict]:
    """The ServiceMonitor, and the alert rules on the model as the Deployment serves it (by its
    bundle's name), with the default thresholds."""
    name = resource_name(bundle.name)
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "inference"}
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "endpoints": [{"port": "http", "path": METRICS, "interval": "15s"}],
        },
    }
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "labels": labels},
        "spec": {"groups": rules_document(bundle.name)["groups"]},
    }
    return [monitor, rule]


def kserve_manifests(bundle: Bundle, config: K8sConfig) -> list[dict]:
    name = resource_name(bundle.name)
    image = config.image or default_image(bundle.name, bundle.id)
    runtime = f"frugalml-{name}"
    # KServe fills in {{.Name}}, the InferenceService's name: the model's name in v2 routes. The
    # container keeps to what Knative (KServe's serverless mode) accepts: one port named http1,
    # probes on it, no preStop (Knative's queue-proxy drains) and no volumes (/tmp is writable).
    probe_port = {"port": KSERVE_PORT}
    runtime_container = {
        "name": "kserve-container",
        "image": image,
        "args": serve_args(config, "{{.Name}}=" + BUNDLE_DIR, KSERVE_PORT),
        "ports": [{"name": "http1", "containerPort": KSERVE_PORT, "protocol": "TCP"}],
        "env": [{"name": "FRUGALML_HOME", "value": HOME}],
        "readinessProbe": {**_probe(READINESS, 5, 2), "httpGet": {"path": READINESS, **probe_port}},
        "livenessProbe": {**_probe(LIVENESS, 10, 3), "httpGet": {"path": LIVENESS, **probe_port}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    serving_runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": runtime},
        "spec": {
            "supportedModelFormats": [{"name": "frugalml", "version": "1", "autoSelect": True}],
            "protocolVersions": ["v2"],
            "multiModel": False,
            "annotations": {"prometheus.io/path": METRICS, "prometheus.io/port": str(KSERVE_PORT)},
            "containers": [runtime_container],
        },
    }
    inference_service = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "labels": {"frugalml.io/bundle": bundle.id}},
        "spec": {
            "predictor": {
                "minReplicas": config.replicas,
                "maxReplicas": config.ceiling,
                "model": {
                    "modelFormat": {"name": "frugalml", "version": "1"},
                    "runtime": runtime,
                    "protocolVersion": "v2",
                    "resources": _resources(config),
                },
            }
        },
    }
    return [serving_runtime, inference_service]


def write_k8s_manifests(bundle: Bundle, output: str | Path, config: K8sConfig | None = None) -> Written:
    """Write the manifests for `bundle` into `output` (absent or empty)."""
    config = config or K8sConfig()
    files = {
        "serve.yaml": serve_manifests(bundle, config),
        "monitoring.yaml": monitoring_manifests(bundle),
        "kserve.yaml": kserve_manifests(bundle, config),
    }

    def populate(folder: Path) -> None:
        for file, documents in files.items():
            (folder / file).write_text(yaml_documents(documents), encoding="utf-8")

    written = write_folder(output, populate)
    image = config.image or default_image(bundle.name, bundle.id)
    return Written(written, list(files), image, f"kubectl apply -f {written / 'serve.yaml'}")
