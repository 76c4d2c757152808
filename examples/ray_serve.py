"""Scale a bundle out over a Ray cluster with Ray Serve, running the predictor `frugalml serve` runs.

    pip install -c constraints.txt ".[ray]"     # ray[serve], pinned
    ray start --head                       # then `ray start --address HEAD:6379` on each other node
    python examples/ray_serve.py BUNDLE_FOLDER --replicas 4
    curl -s 127.0.0.1:8000/ -H 'Content-Type: application/json' -d '{"inputs": ["where is my parcel?"]}'

The bundle folder must be readable at the same path on every node (a shared volume, or copied).
Ray Serve batches concurrent requests per replica (`@serve.batch`), as `frugalml serve` does.
"""

from __future__ import annotations

import argparse
import asyncio

from ray import serve
from starlette.requests import Request

from frugalml.serve.runner import serving_predictor


@serve.deployment(ray_actor_options={"num_cpus": 1})
class Classifier:
    def __init__(self, bundle_folder: str, threads: int = 1):
        self.predictor = serving_predictor(bundle_folder, threads)  # loads and verifies the bundle
        self.predictor.warmup()

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def _top(self, texts: list[str]) -> list[dict]:
        probabilities = self.predictor.predict_proba(texts)
        best = probabilities.argmax(axis=1)
        labels = self.predictor.labels
        return [{"label": labels[i], "score": float(p[i])} for p, i in zip(probabilities, best, strict=True)]

    async def predict(self, texts: list[str]) -> list[dict]:
        """The top label and its probability for each text (concurrent calls share batches)."""
        return list(await asyncio.gather(*(self._top(text) for text in texts)))

    async def __call__(self, request: Request) -> dict:
        return {"predictions": await self.predict((await request.json())["inputs"])}


def app(bundle_folder: str, replicas: int = 1, threads: int = 1):
    return Classifier.options(num_replicas=replicas).bind(bundle_folder, threads)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bundle_folder")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="threads per model call in each replica")
    args = parser.parse_args()
    serve.run(app(args.bundle_folder, args.replicas, args.threads), blocking=True)
