"""Drift: PSI and KS on known distributions, the reference a tuned bundle carries, the server's
gauges and /v1/drift, and `frugalml monitor report` from an access log or a live server."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import make_rows, write_csv
from test_cli import run_cli
from test_serve_support import metric, running, tune_tiny_bundle, wait_until

from frugalml.bundle import load_bundle, new_bundle_id, write_bundle
from frugalml.compress import CompressContext, apply_technique
from frugalml.data import load_dataset
from frugalml.monitor.drift import drift_scores, histogram, ks, psi, quantile_edges
from frugalml.monitor.reference import REFERENCE_FILE, build_reference, load_reference, reference_of
from frugalml.runtime import load_predictor
from frugalml.runtime.predictor import softmax
from frugalml.serve import create_app

# Another domain: financial news headlines. The tiny model's vocabulary (tests/conftest.py) knows
# none of these words, as a support-intent model knows little of market news.
NEWS = [
    "Shares of Acme Corp rose 4.2 percent after quarterly earnings beat analyst estimates",
    "The central bank held interest rates steady and signalled two cuts later this year",
    "Oil prices slipped as inventories grew more than expected in the latest weekly report",
    "The euro weakened against the dollar after inflation data surprised to the downside",
    "Tech stocks led the Nasdaq higher while energy shares lagged behind the broader market",
    "Bond yields climbed for a third straight session on stronger than forecast payrolls",
    "The retailer cut its full year outlook citing softer consumer demand across Europe",
    "Gold hit a record high as investors sought safety amid renewed geopolitical tension",
    "The merger values the combined company at roughly twelve billion dollars including debt",
    "Regulators approved the airline's takeover bid on condition that it sells some routes",
    "Copper futures fell sharply on weaker industrial output figures from major economies",
    "The startup raised a series B round led by a prominent venture capital firm",
]


def in_domain(n_per_class: int, seed: int) -> list[str]:
    return [text for text, _ in make_rows(n_per_class, seed=seed)]


def shifted(n: int) -> list[str]:
    return [NEWS[i % len(NEWS)] for i in range(n)]


# --- the functions, on known distributions ------------------------------------------------------


def test_psi_of_known_shares():
    assert psi([50, 50], [50, 50]) == 0.0
    expected = 0.4 * math.log(0.9 / 0.5) + (-0.4) * math.log(0.1 / 0.5)
    assert psi([50, 50], [90, 10]) == pytest.approx(expected)
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(expected)  # shares work as counts
    assert psi([90, 10], [50, 50]) == pytest.approx(expected)  # symmetric


def test_psi_of_an_empty_bin_is_high_but_finite():
    value = psi([100, 0], [50, 50])
    assert math.isfinite(value) and value > 2
    with pytest.raises(ValueError, match="bins differ"):
        psi([1, 2, 3], [1, 2])


def test_ks_matches_the_normal_distributions_gap():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 20_000), rng.normal(1, 1, 20_000)
    # N(0,1) against N(1,1): the CDFs differ most at 0.5, by 2 Phi(0.5) - 1.
    assert ks(a, b) == pytest.approx(2 * 0.5 * (1 + math.erf(0.5 / math.sqrt(2))) - 1, abs=0.02)
    assert ks(a, a) == 0.0
    assert ks(np.zeros(10), np.ones(10)) == 1.0
    with pytest.raises(ValueError, match="both sides"):
        ks(a, [])


def test_quantile_bins_hold_equal_shares_and_catch_values_outside():
    values = np.arange(1000.0)
    edges = quantile_edges(values, bins=10)
    assert len(edges) == 9
    assert histogram(values, edges).tolist() == [100] * 10
    assert histogram(np.array([-1e9, 1e9]), edges).tolist() == [1] + [0] * 8 + [1]
    assert len(quantile_edges(np.ones(50), bins=10)) == 1  # ties merge into one edge: two bins


def test_drift_scores_are_low_for_the_same_distribution_and_high_for_a_shifted_one():
    rng = np.random.default_rng(1)
    reference_values = rng.normal(0, 1, 5000)
    edges = quantile_edges(reference_values)
    summary = {
        "x": {
            "kind": "numeric",
            "edges": edges,
            "counts": histogram(reference_values, edges),
            "sample": reference_values[:1000],
        },
        "c": {"kind": "categorical", "counts": [500, 300, 200]},
    }
    same = drift_scores(summary, {"x": rng.normal(0, 1, 2000), "c": rng.choice(3, 2000, p=[0.5, 0.3, 0.2])})
    moved = drift_scores(summary, {"x": rng.normal(1, 1, 2000), "c": rng.choice(3, 2000, p=[0.1, 0.2, 0.7])})
    assert (
        same["x"].psi < 0.02 and same["x"].ks is not None and same["x"].ks < 0.07
    )  # 5 % critical value: 0.053
    assert same["c"].psi < 0.02 and same["c"].ks is None
    assert moved["x"].psi > 0.25 and moved["x"].ks is not None and moved["x"].ks > 0.3
    assert moved["c"].psi > 0.25


def test_embedding_components_are_a_linear_projection_of_the_logits():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3, (200, 5))
    reference = build_reference(["x" * i for i in range(200)], softmax(logits), list("abcde"), components=3)
    restored = type(reference).from_json(json.loads(json.dumps(reference.to_json())))
    shifted_logits = logits + rng.normal(0, 5, (200, 1))  # softmax ignores a per-row constant
    features = restored.features_of(["x"] * 200, softmax(shifted_logits))
    centered = logits - logits.mean(axis=1, keepdims=True)
    expected = (centered - restored.projection_mean) @ restored.projection.T
    stacked = np.stack([features[f"embedding_pc{i}"] for i in (1, 2, 3)], axis=1)
    np.testing.assert_allclose(stacked, expected, atol=1e-6)
    assert restored.features["embedding_pc1"]["kind"] == "numeric"
    assert sum(restored.features["class"]["counts"]) == 200


# --- a tuned tiny model -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle_path(tiny_base, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("drift")
    files = {
        "train": write_csv(folder / "train.csv", make_rows(100, seed=1)),
        "test": write_csv(folder / "test.csv", make_rows(8, seed=2)),
    }
    return tune_tiny_bundle(tiny_base, files, folder / "home")


@pytest.fixture(scope="module")
def predictor(bundle_path):
    return load_predictor(load_bundle(bundle_path))


def test_tune_writes_a_hashed_reference_of_the_training_data(bundle_path):
    bundle = load_bundle(bundle_path)
    assert REFERENCE_FILE in bundle.files and len(bundle.files[REFERENCE_FILE]["sha256"]) == 64
    reference = load_reference(bundle)
    assert reference is not None and reference.labels == bundle.labels
    assert reference.rows == 300  # every training row (100 per intent)
    assert set(reference.features) == {
        "class",
        "confidence",
        "length",
        "embedding_pc1",
        "embedding_pc2",
    }  # 3 classes: 2 components


def test_drift_is_low_on_held_out_in_domain_texts_and_high_on_another_domain(bundle_path, predictor):
    reference = load_reference(load_bundle(bundle_path))
    assert reference is not None

    def scores(texts):
        return drift_scores(reference.features, reference.features_of(texts, predictor.predict_proba(texts)))

    # PSI's noise on n texts against m is about (bins - 1) (1/n + 1/m): 0.06 here.
    held_out, news = scores(in_domain(100, seed=7)), scores(shifted(300))
    assert max(s.psi for s in held_out.values()) < 0.25
    assert max(s.psi for s in news.values()) > 1.0
    for feature in ("confidence", "length", "embedding_pc1"):
        assert news[feature].psi > held_out[feature].psi + 0.5


def test_compress_carries_the_reference_into_derived_bundles(bundle_path, tmp_path):
    tuned = load_bundle(bundle_path)
    train = load_dataset(write_csv(tmp_path / "train.csv", make_rows(20, seed=1)))
    derived = apply_technique(
        "onnx", tuned, CompressContext(store=tmp_path / "bundles", train=train, teacher=tuned)
    )
    assert derived.files[REFERENCE_FILE]["sha256"] == tuned.files[REFERENCE_FILE]["sha256"]
    assert load_reference(load_bundle(derived.path)) is not None


def test_a_malformed_reference_is_refused_with_a_clear_error(bundle_path, tmp_path):
    from frugalml.errors import BundleError

    source = load_bundle(bundle_path)

    def populate(folder):
        for name in source.files:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source.path / name, folder / name)
        (folder / REFERENCE_FILE).write_text('{"version": 99}')

    bundle = source.__class__(**{**source.manifest(), "id": new_bundle_id(), "files": {}})
    broken = write_bundle(tmp_path, bundle, populate)
    with pytest.raises(BundleError, match=r"reference\.json is malformed"):
        load_reference(load_bundle(broken.path))


# --- the server ---------------------------------------------------------------------------------


def _predict_all(url: str, texts: list[str], per_request: int = 40) -> None:
    for start in range(0, len(texts), per_request):
        response = httpx.post(
            f"{url}/v1/predict", json={"inputs": texts[start : start + per_request]}, timeout=30
        )
        assert response.status_code == 200


def test_server_gauges_and_drift_route_move_with_the_traffic(predictor, caplog):
    model = predictor.bundle.name
    with caplog.at_level(logging.INFO, logger="frugalml.access"), running(create_app(predictor)) as (url, _):
        _predict_all(url, in_domain(20, seed=3))  # 60 texts
        text = httpx.get(f"{url}/metrics").text
        assert "frugalml_drift_psi{" not in text  # 60 texts: fewer than the window's minimum
        _predict_all(url, in_domain(40, seed=4))  # 180 in-domain texts in all
        text = httpx.get(f"{url}/metrics").text
        calm = {f: metric(text, "frugalml_drift_psi", model=model, feature=f) for f in ("class", "length")}
        assert 0 < calm["length"] < 0.25 and calm["class"] < 0.25
        assert 0 < metric(text, "frugalml_drift_ks", model=model, feature="confidence") < 0.3
        _predict_all(url, shifted(1000))  # the window (1000 texts) is now all news
        text = httpx.get(f"{url}/metrics").text
        assert metric(text, "frugalml_drift_psi", model=model, feature="length") > 2
        assert metric(text, "frugalml_drift_ks", model=model, feature="length") > 0.9
        window = httpx.get(f"{url}/v1/drift").json()["models"][model]
        wait_until(lambda: sum("drift" in r.getMessage() for r in caplog.records) >= 30, what="access log")
    assert window["rows"] == 1000 and window["scores"]["length"]["psi"] > 2
    assert window["features"]["length"][-1] == len(NEWS[999 % len(NEWS)])
    assert set(window["features"]["class"]) <= set(predictor.labels)
    lines = [json.loads(r.getMessage()) for r in caplog.records]
    logged = [line["drift"] for line in lines if "drift" in line]
    assert sum(len(d["class"]) for d in logged) == 60 + 120 + 1000


# --- the report command -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def access_log(predictor, tmp_path_factory) -> str:
    """An access log as `frugalml serve` writes it: the JSON lines of 200 news texts' requests,
    among a line of something else."""
    path = tmp_path_factory.mktemp("log") / "access.log"
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("frugalml.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with running(create_app(predictor)) as (url, _):
            _predict_all(url, shifted(200))
            wait_until(lambda: len(records) >= 5, what="access log lines")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    path.write_text("INFO: uvicorn started\n" + "\n".join(r.getMessage() for r in records) + "\n")
    return str(path)


def test_report_from_an_access_log_writes_json_and_a_png(capsys, bundle_path, access_log, tmp_path):
    png = tmp_path / "out" / "report.png"
    code, out, err = run_cli(
        capsys, "monitor", "report", bundle_path, "--log", access_log, "--output", str(png), "--json"
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["rows"] == 200 and document["png"] == str(png)
    assert document["scores"]["length"]["psi"] > 1 and document["scores"]["class"]["ks"] is None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "note:" not in err
    code, out, _ = run_cli(capsys, "monitor", "report", bundle_path, "--log", access_log)
    assert code == 0 and "significant" in out and "embedding_pc1" in out


def test_report_on_few_texts_says_psi_is_noise(capsys, bundle_path, access_log, tmp_path):
    first = next(line for line in Path(access_log).read_text().splitlines(True) if '"drift"' in line)
    short = tmp_path / "short.log"
    short.write_text(first)
    code, out, err = run_cli(capsys, "monitor", "report", bundle_path, "--log", str(short), "--json")
    assert code == 0 and json.loads(out)["rows"] == 40
    assert "note: only 40 live texts" in err


def test_report_from_a_live_server(capsys, bundle_path, predictor):
    with running(create_app(predictor)) as (url, _):
        _predict_all(url, in_domain(40, seed=9))
        code, out, err = run_cli(capsys, "monitor", "report", bundle_path, "--url", url, "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["rows"] == 120 and document["model"] == predictor.bundle.name
    assert document["scores"]["length"]["psi"] < 0.25


def test_report_refuses_bad_input_with_one_line(capsys, bundle_path, access_log, tmp_path):
    plain = tmp_path / "plain.log"
    plain.write_text('{"path": "/healthz", "status": 200}\nnot json\n')
    other = tmp_path / "other.log"
    other.write_text(json.dumps({"model": "m", "drift": {"class": ["fraud"], "confidence": [0.5]}}) + "\n")
    cases = [
        ((), "exactly one of --log"),
        (("--log", access_log, "--url", "http://127.0.0.1:9"), "exactly one of --log"),
        (("--log", str(tmp_path / "missing.log")), "no such log file"),
        (("--log", str(plain)), "no request carries drift features"),
        (("--log", access_log, "--model", "nope"), "no drift features for model 'nope'"),
        (("--log", str(other)), "lack"),
        (("--url", "http://127.0.0.1:9"), "cannot reach"),
        (("--log", access_log, "--output", str(tmp_path)), "is a folder"),
    ]
    for options, message in cases:
        code, _, err = run_cli(capsys, "monitor", "report", bundle_path, *options)
        assert code == 2, (options, err)
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, (options, err)
    assert not list(tmp_path.glob("*.png"))


def test_a_bundle_without_a_reference_exposes_no_drift(capsys, bundle_path, access_log, tmp_path):
    source = load_bundle(bundle_path)

    def populate(folder):
        for name in source.files:
            if name != REFERENCE_FILE:
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source.path / name, folder / name)

    bundle = source.__class__(**{**source.manifest(), "id": new_bundle_id(), "files": {}})
    bare = write_bundle(tmp_path, bundle, populate)
    assert load_reference(bare) is None
    code, _, err = run_cli(capsys, "monitor", "report", str(bare.path), "--log", access_log)
    assert code == 2 and "has no drift reference" in err
    with running(create_app(load_predictor(load_bundle(bare.path)))) as (url, _):
        _predict_all(url, in_domain(50, seed=12))
        text = httpx.get(f"{url}/metrics").text
        assert "frugalml_drift_psi{" not in text and "frugalml_drift_ks{" not in text
        assert httpx.get(f"{url}/v1/drift").json() == {"models": {}}


def test_reference_of_samples_large_corpora(predictor):
    texts = in_domain(400, seed=11)  # 1200 texts
    reference = reference_of(predictor, texts, max_rows=500)
    assert reference.rows == 500 and sum(reference.features["class"]["counts"]) == 500
    assert len(reference.features["length"]["sample"]) == 500


def test_v2_requests_feed_the_same_window(predictor):
    model = predictor.bundle.name
    texts = in_domain(40, seed=13)  # 120 texts
    body = {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}
    with running(create_app(predictor)) as (url, _):
        response = httpx.post(f"{url}/v2/models/{model}/infer", json=body, timeout=30)
        assert response.status_code == 200
        window = httpx.get(f"{url}/v1/drift").json()["models"][model]
    assert window["rows"] == 120 and window["features"]["length"] == [float(len(t)) for t in texts]
    assert window["scores"]["length"]["psi"] < 0.25
