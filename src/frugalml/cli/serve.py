"""`frugalml serve`."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any

import typer

from frugalml import ui
from frugalml.cli.options import Device
from frugalml.errors import FrugalError
from frugalml.settings import INFERENCE_ENV

API_KEY_ENV = "FRUGALML_API_KEY"
API_KEY_FILE_ENV = "FRUGALML_API_KEY_FILE"


def serve(
    bundles: Annotated[
        list[str],
        typer.Argument(help="Bundle ids (or unique prefixes) or folders; NAME=REF serves REF under NAME."),
    ],
    host: Annotated[
        str, typer.Option(help="Address to bind; loopback unless you mean otherwise.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes, each with its own model copy.")] = 1,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Threads per model call (default: (cores - 1) / (workers x parallel), at least 1). "
            "A call running alone, and an ONNX Runtime session's pool shared by the calls, get every "
            "core of the worker.",
        ),
    ] = None,
    parallel: Annotated[
        int | None,
        typer.Option(
            min=1, help="Model calls at once per worker, each on its own thread (default: 2 on 2+ cores)."
        ),
    ] = None,
    max_batch_size: Annotated[int, typer.Option(min=1, help="Texts per model call.")] = 32,
    max_wait_ms: Annotated[
        float, typer.Option(min=0, help="Longest a queued text waits for companions (never when idle).")
    ] = 10.0,
    max_queue: Annotated[int, typer.Option(min=1, help="Queued texts before 503 + Retry-After.")] = 1024,
    timeout: Annotated[
        float,
        typer.Option(
            min=0.001,
            help="Per-request deadline in seconds (504); also how long a body may take to arrive (408).",
        ),
    ] = 30.0,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Largest request body (413) [default: 1 MiB; with an image model, room for one "
            "base64 image of --max-image-bytes].",
        ),
    ] = None,
    max_items: Annotated[int, typer.Option(min=1, help="Most texts per request (422).")] = 256,
    max_text_chars: Annotated[int, typer.Option(min=1, help="Longest text in characters (422).")] = 10_000,
    max_image_bytes: Annotated[
        int, typer.Option(min=1, help="Largest encoded image in bytes (413); --max-body-bytes applies too.")
    ] = 8 << 20,
    max_image_pixels: Annotated[
        int,
        typer.Option(
            min=1,
            help="Most pixels (width x height) of one image, checked before decoding (413).",
        ),
    ] = 4096 * 4096,
    header_timeout: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="Seconds a request's headers may take to arrive, from connecting or from the previous "
            "answer; slower connections are closed.",
        ),
    ] = None,
    max_idle_per_client: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Connections one client address may hold open without a request; past it the one idle "
            "longest is closed. Raise it behind a proxy.",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar=API_KEY_ENV,
            help="Require 'Authorization: Bearer KEY' on inference routes. On the command line the key "
            "shows in the process list: prefer --api-key-file or the environment variable.",
        ),
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            envvar=API_KEY_FILE_ENV,
            dir_okay=False,
            help="Read the API key from this file (surrounding whitespace trimmed); the safe way to give it.",
        ),
    ] = None,
    access_log: Annotated[bool, typer.Option(help="One JSON line per request on stderr.")] = True,
    drain: Annotated[
        float, typer.Option(min=0, help="Seconds to finish in-flight requests on SIGTERM.")
    ] = 30.0,
    device: Device = None,
    alerts: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="Evaluate these alert rules (from `frugalml monitor rules`) on the server's own metrics; "
            "alerts go to the lineage store (`frugalml alerts list`) and to --notify.",
        ),
    ] = None,
    notify: Annotated[
        str | None,
        typer.Option(help="Post each alert that fires or resolves here, as Alertmanager's webhook does."),
    ] = None,
    alert_interval: Annotated[
        float | None, typer.Option(min=0.01, help="Seconds between alert evaluations (default 10).")
    ] = None,
    alert_resend: Annotated[
        float | None,
        typer.Option(
            min=0.01, help="Remind --notify of a firing alert this often, in seconds (default never)."
        ),
    ] = None,
    fault: Annotated[
        str | None, typer.Option(hidden=True, help="Tests only: slow:SECONDS or error:RATE.")
    ] = None,
) -> None:
    """Serve bundles over HTTP: /v1/predict, Open Inference Protocol v2, /metrics, /readyz.

    Bundles with the same name become versions of one model. SIGTERM drains in-flight requests
    and exits 0.
    """
    for name, value in INFERENCE_ENV.items():  # before torch is imported
        os.environ.setdefault(name, value)
    ui.quiet_libraries()
    from frugalml.devices import parse_device
    from frugalml.lineage import open_store, resolve_bundle
    from frugalml.runtime.formats import check_device
    from frugalml.serve.catalog import check_model_name
    from frugalml.serve.config import ServeConfig
    from frugalml.serve.runner import ServeSpec
    from frugalml.serve.runner import serve as run_server

    # Two calls side by side beat one call at a time on 2 cores under most loads: while one
    # tokenizes or hands results back, the other computes (bench/serve.py; docs/serving.md).
    parallel = parallel or min(2, os.cpu_count() or 1)
    device = parse_device(device)
    key = _api_key(api_key, api_key_file)
    given: dict[str, Any] = {"header_timeout_s": header_timeout, "max_idle_per_client": max_idle_per_client}
    try:
        config = ServeConfig(
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
            parallel=parallel,
            timeout_s=timeout,
            max_body_bytes=max_body_bytes,
            max_items=max_items,
            max_text_chars=max_text_chars,
            max_image_bytes=max_image_bytes,
            max_image_pixels=max_image_pixels,
            api_key=key,
            access_log=access_log,
            **{name: value for name, value in given.items() if value is not None},  # else its default
        )
    except ValueError as exc:
        raise FrugalError(_as_options(str(exc))) from None
    alerting = _alerting(alerts, notify, alert_interval, alert_resend)
    if fault is not None:
        from frugalml.serve.faults import Fault

        Fault.parse(fault)  # refused before any model loads
    if api_key is not None and api_key != os.environ.get(API_KEY_ENV):  # given on the command line
        ui.err.print(
            f"warning: --api-key shows in the process list; give it with --api-key-file or {API_KEY_ENV}"
        )
    lineage = open_store()
    models, served = [], set()
    for ref in bundles:
        name, _, target = ref.rpartition("=") if "=" in ref and not os.path.exists(ref) else ("", "", ref)
        bundle = resolve_bundle(target, lineage)
        check_model_name(name or bundle.name)
        check_device(bundle, device)
        if (name or bundle.name, bundle.id) in served:
            raise FrugalError(f"{ref}: bundle {bundle.id} is already served as {name or bundle.name!r}")
        served.add((name or bundle.name, bundle.id))
        models.append((name or bundle.name, str(bundle.path)))
        ui.err.print(f"serving {bundle.id} ({bundle.format}, {bundle.precision}) as {name or bundle.name!r}")
    if alerting is not None:  # a wrong rule file is refused before any model loads
        from frugalml.monitor.alerting import check_models, load_rules

        check_models(load_rules(alerting.rules_path), [name for name, _ in models])
    listener = _listen(host, port)  # before any model loads; the server takes this socket
    # One core stays with the event loop, the tokenizer and the network: a model call takes the
    # cores left over, shared by the calls that run at once.
    threads = threads or max(1, ((os.cpu_count() or 1) - 1) // (workers * parallel))
    ui.err.print(
        f"on http://{host}:{port} ({workers} worker(s), {parallel} model call(s) at once, "
        f"{threads} thread(s) each, device {device}); "
        + ("an API key is required on inference routes" if config.api_key else "no API key: open to all")
    )
    # A PyTorch call that runs alone may use every core of its worker (the event loop is idle).
    lone_threads = max(threads, (os.cpu_count() or 1) // workers)
    spec = ServeSpec(models, config, threads, lone_threads, device, fault)
    if alerting is not None:
        ui.err.print(
            f"alerts: {alerting.rules_path}" + (f" -> {alerting.notify_url}" if alerting.notify_url else "")
        )
    run_server(spec, listener, host=host, port=port, workers=workers, drain_s=drain, alerts=alerting)


def _alerting(rules: Path | None, notify: str | None, interval: float | None, resend: float | None):
    """The embedded alerting settings, or None without --alerts."""
    from frugalml.monitor.alerting import AlertingConfig

    if rules is None:
        if notify is not None or interval is not None or resend is not None:
            raise FrugalError("--notify, --alert-interval and --alert-resend need --alerts RULES")
        return None
    given = {"interval_s": interval} if interval is not None else {}
    return AlertingConfig(str(rules), notify, resend_s=resend, **given)


def _api_key(given: str | None, key_file: Path | None) -> str | None:
    """The key from --api-key (or its environment variable) or from --api-key-file, not both."""
    if key_file is None:
        # click takes an empty FRUGALML_API_KEY for unset; an empty secret must fail closed.
        return os.environ.get(API_KEY_ENV) if given is None else given
    if given is not None or API_KEY_ENV in os.environ:
        raise FrugalError(f"give the API key once: --api-key-file, or --api-key (or {API_KEY_ENV})")
    try:
        key = key_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FrugalError(
            f"cannot read --api-key-file {key_file}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    if not key.strip():  # fail closed, as for an empty --api-key
        raise FrugalError(f"--api-key-file {key_file} is empty; leave it unset to serve without a key")
    return key


def _as_options(message: str) -> str:
    """ServeConfig's messages name its fields; say the options that set them instead."""
    from frugalml.serve.config import ServeConfig

    def option(match: re.Match) -> str:
        name = match.group()
        if name == "api_key":
            return f"--api-key (or {API_KEY_ENV})"
        return "--" + name.removesuffix("_s").replace("_", "-")  # timeout_s is --timeout

    names = "|".join(field.name for field in dataclasses.fields(ServeConfig))
    return re.sub(rf"\b({names})\b", option, message)


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound once and before any model loads, so that a taken port is refused
    at once (uvicorn would say so after loading). It listens only when the server starts: while
    models load, clients are refused rather than left waiting. Bound as uvicorn binds: IPv6 when
    the host has a colon, else IPv4; "" is every interface."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.set_inheritable(True)  # worker processes serve it too
        return listener
    except OSError as exc:
        listener.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host or '0.0.0.0'}:{port}"
        raise FrugalError(f"cannot listen on {where}: {exc.strerror or exc}") from None
