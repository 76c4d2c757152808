"""The models one server holds: names, versions (bundle ids) and their batchers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from frugalml.bundle import TEXT_TASK
from frugalml.errors import FrugalError
from frugalml.monitor.metrics import ServingMetrics
from frugalml.monitor.window import DriftWindow, window_for
from frugalml.runtime.predictor import Predictor
from frugalml.serve.batcher import Batcher
from frugalml.serve.config import ServeConfig
from frugalml.serve.errors import ApiError

PLATFORMS = {"torch": "pytorch_frugalml", "onnx": "onnxruntime_onnx"}


@dataclass
class ServedModel:
    name: str
    version: str
    predictor: Predictor
    batcher: Batcher
    ready: bool = False
    drift: DriftWindow | None = None  # the default version of a bundle with a reference

    @property
    def task(self) -> str:
        bundle = self.predictor.bundle
        return bundle.task if bundle else TEXT_TASK

    @property
    def image_input(self) -> tuple[int, int]:
        """An image model's input: (channels, pixels a side)."""
        config = self.predictor.config  # type: ignore[attr-defined]  # ImagePredictor's
        return config.channels, config.image_size

    @property
    def platform(self) -> str:
        bundle = self.predictor.bundle
        return PLATFORMS.get(bundle.format, bundle.format) if bundle else "pytorch_frugalml"


def check_model_name(name: str) -> None:
    """Refuse a name that v2 routes cannot carry: they take it as one URL path segment."""
    if name in ("", ".", "..") or "/" in name:  # URLs resolve "." and ".." away
        raise FrugalError(
            f"model name {name!r} cannot be served: a name must be non-empty, not '.' or '..', "
            "and without '/' "
            "(serve the bundle as NAME=BUNDLE to give it another name)"
        )


class Catalog:
    """Models by name; bundles sharing a name are versions of it, the first listed the default."""

    def __init__(
        self,
        predictors: Sequence[tuple[str, Predictor]],
        metrics: ServingMetrics,
        config: ServeConfig,
    ):
        if not predictors:
            raise FrugalError("serve at least one model")
        self._by_name: dict[str, list[ServedModel]] = {}
        for name, predictor in predictors:
            check_model_name(name)
            version = predictor.bundle.id if predictor.bundle else "1"
            if any(m.version == version for m in self._by_name.get(name, [])):
                raise FrugalError(f"model {name!r} version {version} is listed twice")
            batcher = Batcher(
                predictor,
                metrics,
                name,
                max_batch_size=config.max_batch_size,
                max_wait=config.max_wait_ms / 1000,
                max_queue=config.max_queue,
                parallel=config.parallel,
            )
            # The drift gauges are labelled by model name: the default version feeds them.
            drift = None if name in self._by_name else window_for(predictor.bundle, name, metrics)
            self._by_name.setdefault(name, []).append(
                ServedModel(name, version, predictor, batcher, drift=drift)
            )
        self.default = next(iter(self._by_name.values()))[0]

    def __iter__(self) -> Iterator[ServedModel]:
        for versions in self._by_name.values():
            yield from versions

    def versions(self, name: str, *, list_known: bool = True) -> list[ServedModel]:
        """The versions of model `name`; a 404 names the served models only if `list_known`."""
        if name not in self._by_name:
            served = f"; serving: {', '.join(self._by_name)}" if list_known else ""
            raise ApiError(404, f"unknown model {name!r}{served}")
        return self._by_name[name]

    def get(
        self, name: str | None = None, version: str | None = None, *, list_known: bool = True
    ) -> ServedModel:
        """The model `name` at `version` (default: the first). Routes open to callers without the
        API key pass `list_known=False`: their 404s then name no served model or version."""
        if name is None:
            if len(self._by_name) > 1:
                raise ApiError(422, f"several models are served; name one of: {', '.join(self._by_name)}")
            name = self.default.name
        versions = self.versions(name, list_known=list_known)
        if version is None:
            return versions[0]
        for model in versions:
            if model.version == version:
                return model
        known = f"; versions: {', '.join(m.version for m in versions)}" if list_known else ""
        raise ApiError(404, f"model {name!r} has no version {version!r}{known}")
