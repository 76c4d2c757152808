"""`frugalml deploy`: the Dockerfile passes hadolint, the manifests validate against the Kubernetes
schemas (and the CRDs' own, written below from their docs), and they name routes and ports that
`serve` really has."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema
import kubernetes_validate
import pytest
import typer
import yaml
from test_cli import run_cli
from test_serve_support import free_port, running

from frugalml import __version__
from frugalml.bundle import load_bundle
from frugalml.cli import app
from frugalml.deploy.config import BUNDLE_DIR, PORT
from frugalml.runtime import load_predictor
from frugalml.serve import create_app

HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
K8S_VERSIONS = ("1.30.0", "1.37.0")  # an older cluster and the newest schemas kubernetes-validate has


@pytest.fixture
def docker_dir(capsys, bundle_path, tmp_path, home) -> Path:
    code, out, err = run_cli(
        capsys, "deploy", "docker", bundle_path, "--output", str(tmp_path / "ctx"), "--json"
    )
    assert code == 0, err
    written = json.loads(out)
    assert written["files"] == [
        "Dockerfile",
        ".dockerignore",
        "requirements.txt",
        "constraints.txt",
        "bundle/",
    ]
    assert written["next"].startswith("docker build -t ")
    return Path(written["output"])


def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [HADOLINT, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )


def test_dockerfile_passes_hadolint_and_serves_the_copied_bundle(docker_dir, bundle_path):
    lint = _hadolint(docker_dir / "Dockerfile")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    # The linter does find faults: an unpinned, root, latest-tagged image fails it.
    bad = docker_dir.parent / "Bad.Dockerfile"
    bad.write_text("FROM python\nRUN pip install torch\nCMD python -m http.server\n")
    assert _hadolint(bad).returncode != 0

    text = (docker_dir / "Dockerfile").read_text()
    assert f"FROM python:{sys.version_info.major}.{sys.version_info.minor}-slim\n" in text  # this Python
    assert "--index-url https://download.pytorch.org/whl/cpu torch==" in text  # the CPU wheel
    assert "\nUSER 10001:10001\n" in text and "HEALTHCHECK" in text and "/readyz" in text
    assert f'CMD ["serve", "{BUNDLE_DIR}", "--host", "0.0.0.0", "--port", "{PORT}"' in text
    assert f"COPY bundle/ {BUNDLE_DIR}/" in text
    # The copy is the bundle, every file verified.
    copied = load_bundle(docker_dir / "bundle")
    assert copied.id == load_bundle(bundle_path).id
    assert (docker_dir / "requirements.txt").read_text() == f"frugalml=={__version__}\n"
    constraints = (docker_dir / "constraints.txt").read_text()
    assert "\ntorch==" in constraints and "+cpu" not in constraints and "frugalml==" not in constraints
    ignored = (docker_dir / ".dockerignore").read_text().splitlines()
    assert ignored[1:] == ["*", "!requirements.txt", "!constraints.txt", "!bundle/", "!wheels/"]


def test_a_wheel_is_copied_and_installed(capsys, bundle_path, tmp_path, home):
    wheel = tmp_path / f"frugalml-{__version__}-py3-none-any.whl"
    wheel.write_bytes(b"PK")  # only copied, never opened here
    output = tmp_path / "ctx"
    code, _out, err = run_cli(
        capsys, "deploy", "docker", bundle_path, "-o", str(output), "--wheel", str(wheel), "--json"
    )
    assert code == 0, err
    assert (output / "wheels" / wheel.name).read_bytes() == b"PK"
    assert (output / "requirements.txt").read_text() == f"./wheels/{wheel.name}\n"
    assert "COPY wheels/ ./wheels/\n" in (output / "Dockerfile").read_text()
    assert _hadolint(output / "Dockerfile").returncode == 0


def _documents(folder: Path) -> dict[str, list[dict]]:
    texts = {f.name: f.read_text() for f in sorted(folder.glob("*.yaml"))}
    assert not any("&id" in text for text in texts.values())  # no YAML anchors: plain to read and edit
    return {name: list(yaml.safe_load_all(text)) for name, text in texts.items()}


@pytest.fixture
def k8s_dir(capsys, bundle_path, tmp_path, home) -> Path:
    args = [
        "--replicas",
        "3",
        "--cpu",
        "3",
        "--memory",
        "1536Mi",
        "--gpu",
        "1",
        "--image",
        "reg.example/intent:1",
    ]
    code, out, err = run_cli(capsys, "deploy", "k8s", bundle_path, "--output", str(tmp_path / "k8s"), *args)
    assert code == 0, err
    assert "kubectl apply -f" in out
    return tmp_path / "k8s"


# Minimal schemas for the custom resources kubernetes-validate lacks, written from the CRDs'
# documentation (Prometheus Operator monitoring.coreos.com/v1; KServe serving.kserve.io): the
# fields these manifests use, with their types, required fields and no unknown keys.
_DURATION = {"type": "string", "pattern": r"^(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$"}
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": _LABELS,
    },
}


def _resource(api_version: str, kind: str, spec: dict) -> dict:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
    }


_RULE = {
    "type": "object",
    "required": ["expr"],
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
    "additionalProperties": False,
    "properties": {
        "alert": {"type": "string"},
        "record": {"type": "string"},
        "expr": {"type": ["string", "integer"]},
        "for": _DURATION,
        "labels": _LABELS,
        "annotations": _LABELS,
    },
}

CRD_SCHEMAS = {
    "PrometheusRule": _resource(
        "monitoring.coreos.com/v1",
        "PrometheusRule",
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": _DURATION,
                            "rules": {"type": "array", "minItems": 1, "items": _RULE},
                        },
                    },
                }
            },
        },
    ),
    "ServiceMonitor": _resource(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {"type": "object", "properties": {"matchLabels": _LABELS}},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": _DURATION,
                        },
                    },
                },
            },
        },
    ),
    "ServingRuntime": _resource(
        "serving.kserve.io/v1alpha1",
        "ServingRuntime",
        {
            "type": "object",
            "required": ["containers", "supportedModelFormats"],
            "additionalProperties": False,
            "properties": {
                "supportedModelFormats": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "version": {"type": "string"},
                            "autoSelect": {"type": "boolean"},
                        },
                    },
                },
                "protocolVersions": {"type": "array", "items": {"enum": ["v1", "v2", "grpc-v1", "grpc-v2"]}},
                "multiModel": {"type": "boolean"},
                "annotations": _LABELS,
                "containers": {"type": "array", "minItems": 1},  # core Containers: checked in a Pod below
            },
        },
    ),
    "InferenceService": _resource(
        "serving.kserve.io/v1beta1",
        "InferenceService",
        {
            "type": "object",
            "required": ["predictor"],
            "additionalProperties": False,
            "properties": {
                "predictor": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "minReplicas": {"type": "integer", "minimum": 0},
                        "maxReplicas": {"type": "integer", "minimum": 0},
                        "model": {
                            "type": "object",
                            "required": ["modelFormat"],
                            "additionalProperties": False,
                            "properties": {
                                "modelFormat": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
                                },
                                "runtime": {"type": "string"},
                                "protocolVersion": {"enum": ["v1", "v2", "grpc-v2"]},
                                "resources": {"type": "object"},  # core ResourceRequirements: checked below
                            },
                        },
                    },
                }
            },
        },
    ),
}


def _as_pod(containers: list[dict], volumes: list[dict]) -> dict:
    """Containers inside a Pod, so that the core schema checks them."""
    spec = {"containers": containers, "volumes": volumes}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": spec}


def test_manifests_validate_against_the_kubernetes_schemas(k8s_dir):
    documents = _documents(k8s_dir)
    kinds = {name: [d["kind"] for d in docs] for name, docs in documents.items()}
    assert kinds == {
        "kserve.yaml": ["ServingRuntime", "InferenceService"],
        "monitoring.yaml": ["ServiceMonitor", "PrometheusRule"],
        "serve.yaml": ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"],
    }
    checked = []
    for document in (d for docs in documents.values() for d in docs):
        if document["kind"] in CRD_SCHEMAS:
            jsonschema.validate(document, CRD_SCHEMAS[document["kind"]])
            spec = document["spec"]
            if document["kind"] == "ServingRuntime":
                extra = _as_pod(spec["containers"], [])
            elif document["kind"] == "InferenceService":
                model = spec["predictor"]["model"]
                extra = _as_pod([{"name": "c", "image": "i", "resources": model["resources"]}], [])
            else:
                extra = None
            for version in K8S_VERSIONS:
                if extra:
                    kubernetes_validate.validate(extra, version, strict=True)
        else:
            for version in K8S_VERSIONS:
                kubernetes_validate.validate(document, version, strict=True)
        checked.append(document["kind"])
    assert len(checked) == 8


def test_the_validation_catches_mistakes(k8s_dir):
    deployment, _service, *_ = _documents(k8s_dir)["serve.yaml"]
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["pth"] = probe["httpGet"].pop("path")  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
    monitor = _documents(k8s_dir)["monitoring.yaml"][0]
    monitor["spec"]["endpoints"][0]["interval"] = "fifteen seconds"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, CRD_SCHEMAS["ServiceMonitor"])


def _serve_options(args: list[str]) -> dict:
    """`frugalml serve`'s parsed options for these arguments: the real command's parser."""
    command = typer.main.get_command(app)
    context = command.make_context("frugalml", list(args), resilient_parsing=False)
    name, sub, rest = command.resolve_command(context, list(args))
    return sub.make_context(name, rest, parent=context).params


PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def test_manifests_name_the_routes_ports_and_options_serve_has(k8s_dir, bundle_path):
    documents = _documents(k8s_dir)
    deployment, service, autoscaler, budget = documents["serve.yaml"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    options = _serve_options(container["args"])
    assert options["bundles"] == [BUNDLE_DIR] and options["host"] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": options["port"]} and options["port"] == PORT
    # 3 CPUs: two model calls at once, one thread each, one core left to the event loop.
    assert (options["parallel"], options["threads"]) == (2, 1)
    assert options["device"] == "cuda"  # --gpu 1
    assert container["resources"]["limits"] == {"cpu": "3", "memory": "1536Mi", "nvidia.com/gpu": 1}
    assert container["image"] == "reg.example/intent:1"
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert autoscaler["spec"]["minReplicas"] == 3 and autoscaler["spec"]["maxReplicas"] == 12
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    # preStop, then SIGTERM's drain, both within the grace period.
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pre_stop + options["drain"] < pod["terminationGracePeriodSeconds"]
    monitor, rule = documents["monitoring.yaml"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    runtime, inference = documents["kserve.yaml"]
    (kserve_container,) = runtime["spec"]["containers"]
    kserve_options = _serve_options(kserve_container["args"])
    assert kserve_options["bundles"] == ["{{.Name}}=" + BUNDLE_DIR] and kserve_options["port"] == 8080
    assert inference["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]

    # Every path probed or scraped answers 200 on a real server of the bundle.
    probes = [c[kind] for c in (container, kserve_container) for kind in PROBES if kind in c]
    assert len(probes) == 5  # KServe's serverless mode (Knative) takes no startup probe
    assert {p["httpGet"]["port"] for p in probes} == {"http", 8080}
    assert kserve_container["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    assert runtime["spec"]["annotations"]["prometheus.io/path"] == monitor["spec"]["endpoints"][0]["path"]
    paths = {p["httpGet"]["path"] for p in probes} | {monitor["spec"]["endpoints"][0]["path"]}
    assert paths == {"/healthz", "/readyz", "/metrics"}
    with running(create_app(load_predictor(load_bundle(bundle_path)))) as (url, _):
        assert {path: httpx.get(url + path).status_code for path in paths} == dict.fromkeys(paths, 200)
        exposed = httpx.get(url + "/metrics").text
    # The alert rules watch the model as the Deployment serves it, on metrics the server exposes.
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    served = load_bundle(bundle_path).name
    assert rules and all(r["labels"]["model"] == served for r in rules)
    metrics = {name for r in rules for name in re.findall(r"\bfrugalml_\w+", r["expr"])}
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in metrics}  # a histogram's series
    declared = set(re.findall(r"^# TYPE (\w+) ", exposed, re.MULTILINE))
    assert metrics and not families - declared


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian's prometheus)")
def test_prometheus_rule_passes_promtool(k8s_dir, tmp_path):
    _, rule = _documents(k8s_dir)["monitoring.yaml"]
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rule["spec"]))  # a PrometheusRule's spec is a rule file
    check = subprocess.run(["promtool", "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_bad_bundles_options_and_outputs_are_one_clear_error(capsys, bundle_path, tmp_path, home):
    output = tmp_path / "out"
    code, _out, err = run_cli(capsys, "deploy", "docker", str(tmp_path / "nope"), "-o", str(output))
    assert code == 2 and "no bundle" in err.lower() and len(err.strip().splitlines()) == 1
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle_path, tampered)
    weights = next(p for p in tampered.rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-8])
    for kind in ("docker", "k8s"):
        code, _, err = run_cli(capsys, "deploy", kind, str(tampered), "-o", str(output))
        assert code == 2 and "error:" in err and len(err.strip().splitlines()) == 1, err
    assert not output.exists()  # nothing written
    code, _, err = run_cli(capsys, "deploy", "k8s", bundle_path, "-o", str(output), "--cpu", "lots")
    assert code == 2 and "cpu" in err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    code, _, err = run_cli(capsys, "deploy", "k8s", bundle_path, "-o", str(taken))
    assert code == 2 and "not an empty folder" in err
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    assert not list(tmp_path.glob(".*.partial"))


@pytest.mark.slow
def test_ray_serve_example_runs_the_serving_predictor(bundle_path, tmp_path_factory, monkeypatch):
    serve = pytest.importorskip(
        "ray.serve", reason="Ray Serve's extras are not installed: pip install 'ray[serve]'"
    )
    import ray

    examples = Path(__file__).resolve().parents[1] / "examples"
    monkeypatch.syspath_prepend(str(examples))
    example = __import__("ray_serve")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    # Ray's workers import the example and frugalml from where this test does.
    paths = [str(examples), *(p for p in sys.path if p)]
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=str(tmp_path_factory.mktemp("r")),
        runtime_env={"env_vars": {"PYTHONPATH": ":".join(paths), "RAY_AUTH_MODE": "disabled"}},
    )
    texts = ["refund money back please", "my card was stolen", "forgot password reset"]
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        handle = serve.run(example.app(bundle_path), name="frugalml", route_prefix="/")
        predictions = handle.predict.remote(texts).result(timeout_s=120)
        over_http = httpx.post(f"http://127.0.0.1:{port}/", json={"inputs": texts}, timeout=60).json()
    finally:
        serve.shutdown()
        ray.shutdown()
    probabilities = load_predictor(load_bundle(bundle_path)).predict_proba(texts)
    assert [p["label"] for p in predictions] == [
        load_bundle(bundle_path).labels[i] for i in probabilities.argmax(1)
    ]
    assert [p["score"] for p in predictions] == pytest.approx(probabilities.max(1).tolist(), abs=1e-5)
    assert over_http == {"predictions": predictions}
