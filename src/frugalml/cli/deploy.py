"""`frugalml deploy docker|k8s`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from frugalml import ui
from frugalml.cli.options import Json
from frugalml.deploy.config import DockerConfig, K8sConfig
from frugalml.errors import FrugalError

app = typer.Typer(
    help="Deployment files for a bundle: a Docker build context, Kubernetes and KServe manifests.",
    no_args_is_help=True,
)

Bundle = Annotated[str, typer.Argument(help="Bundle id (or unique prefix) or folder.")]
Output = Annotated[Path, typer.Option("--output", "-o", help="A new (or empty) folder to write.")]


def _bundle(ref: str):
    from frugalml.lineage import open_store, resolve_bundle

    return resolve_bundle(ref, open_store())  # verifies every file: a bad bundle is refused here


def _config(kind, **given):
    """The config from the options the user gave (the rest keep the config's defaults)."""
    try:
        return kind(**{name: value for name, value in given.items() if value is not None})
    except ValueError as exc:  # FrugalError (check_ranges) passes through
        raise FrugalError(str(exc)) from None


def _report(written, json: bool) -> None:
    if json:
        ui.emit_json(written.to_json())
        return
    ui.out.print(ui.table(f"wrote {ui.short_path(written.output)}", ["file"], [(f,) for f in written.files]))
    ui.out.print(f"next: {written.next_step}")


@app.command("docker")
def docker(
    bundle: Bundle,
    output: Output,
    wheel: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="Install frugalml from this wheel (pip wheel --no-deps -w dist .), not the package index.",
        ),
    ] = None,
    python: Annotated[
        str | None, typer.Option(help="Python of the slim base image.", show_default=DockerConfig.python)
    ] = None,
    json: Json = False,
) -> None:
    """A Docker build context serving BUNDLE: slim CPU image (PyTorch's CPU wheel), non-root user,
    the bundle copied in, `frugalml serve --host 0.0.0.0`, a HEALTHCHECK on /readyz, .dockerignore."""
    from frugalml.deploy.docker import write_docker_context

    config = _config(DockerConfig, wheel=str(wheel) if wheel else None, python=python)
    _report(write_docker_context(_bundle(bundle), output, config), json)


@app.command("k8s")
def k8s(
    bundle: Bundle,
    output: Output,
    image: Annotated[
        str | None, typer.Option(help="Image to run.", show_default="the tag `deploy docker` suggests")
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option(help="Pods at least (the autoscaler's floor).", show_default=str(K8sConfig.replicas)),
    ] = None,
    max_replicas: Annotated[
        int | None, typer.Option(help="The autoscaler's ceiling.", show_default="4 x replicas")
    ] = None,
    cpu: Annotated[
        str | None,
        typer.Option(help="CPU per pod (2, 0.5, 500m); sizes serve's threads.", show_default=K8sConfig.cpu),
    ] = None,
    memory: Annotated[
        str | None, typer.Option(help="Memory per pod (2Gi, 512Mi).", show_default=K8sConfig.memory)
    ] = None,
    gpu: Annotated[
        int | None,
        typer.Option(
            help="nvidia.com/gpu per pod (needs an image with CUDA torch).", show_default=str(K8sConfig.gpu)
        ),
    ] = None,
    json: Json = False,
) -> None:
    """Kubernetes manifests for BUNDLE: Deployment (startup, readiness and liveness probes, a preStop
    drain), Service, HorizontalPodAutoscaler, PodDisruptionBudget; a ServiceMonitor; and a KServe
    ServingRuntime + InferenceService on the Open Inference Protocol (v2)."""
    from frugalml.deploy.k8s import write_k8s_manifests

    config = _config(
        K8sConfig, image=image, replicas=replicas, max_replicas=max_replicas, cpu=cpu, memory=memory, gpu=gpu
    )
    _report(write_k8s_manifests(_bundle(bundle), output, config), json)
