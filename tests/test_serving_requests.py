"""Hostile V2 requests over HTTP to a real MLServer serving a real small model: every malformed one
is a 4xx naming its field (413 for size), the server keeps serving, and no caller decides where or
under which day a prediction is logged. Limits come from the use case's `serving:` section."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from assay.settings import REPO_ROOT
from assay.spec import SpecError, load_spec
from conftest import free_ports, log_lightgbm_model
from resources.deployment.model_server import LocalModelServer
from serving import inference_log
from serving.requests import v2_request
from training.artifacts import model_sha256
from training.tabular import FeatureSet

FEATURES = FeatureSet(numeric=["signal", "count"], categorical=["city", "segment"], target="target",
                      task="binary_classification")
NUMERIC, CATEGORICAL = FEATURES.numeric, FEATURES.categorical
# Two use cases served by one server: "weather" allows missing values, "flights" refuses them.
LIMITS = {
    "weather": {"max_body_bytes": 65536, "max_rows": 50, "max_string_length": 32, "max_request_id_length": 40,
                "max_entity_id_length": 40},
    "flights": {"max_body_bytes": 32768, "allow_missing_values": False, "log_retention_days": 7},
}
PARTITIONS = {"start": "2013-01-01", "end": "2100-01-01"}  # reaching the future: the clock bound must hold


def rows(count: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=count)
    city = rng.choice(["paris", "oslo", "lima"], size=count)
    return pl.DataFrame({
        "signal": signal, "count": rng.integers(0, 50, size=count).astype(float),
        "city": city, "segment": rng.choice(["a", "b"], size=count),
        "target": (rng.random(count) < 1 / (1 + np.exp(-(1.5 * signal + (city == "paris"))))).astype(np.int32),
    })


def spec_with_limits(folder: Path, name: str) -> None:
    text = (REPO_ROOT / "usecases" / f"{name}.yaml").read_text()
    start, end = text.index("partitions:"), text.index("tables:")
    serving = "serving:\n" + "".join(f"  {key}: {json.dumps(value)}\n" for key, value in LIMITS[name].items())
    partitions = f"partitions:\n  start: \"{PARTITIONS['start']}\"\n  end: \"{PARTITIONS['end']}\"\n\n"
    (folder / f"{name}.yaml").write_text(text[:start] + partitions + text[end:] + "\n" + serving)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One MLServer on loopback serving a small LightGBM model, logged as training logs it, under two
    use cases' names and limits."""
    folder = tmp_path_factory.mktemp("served")
    train = rows(600)
    log_lightgbm_model(folder, train, FEATURES, example_rows=3)
    (folder / "usecases").mkdir()
    for name in LIMITS:
        spec_with_limits(folder / "usecases", name)
    port = free_ports()
    served = LocalModelServer(root=str(folder / "serving"), http_port=port, grpc_port=port + 1, metrics_port=port + 2)
    sha = model_sha256(folder / "pyfunc")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_USECASES_DIR", str(folder / "usecases"))
        for name in LIMITS:
            served.stage(name, "1", folder / "pyfunc", sha)
    served.start()
    yield served
    served.stop()


def post(server: LocalModelServer, name: str, body: bytes, headers: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"{server.url}/v2/models/{name}/infer", data=body,
                                     headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def good(count: int = 2) -> dict:
    return v2_request(rows(count, seed=1), NUMERIC, CATEGORICAL)


def field(body: dict, name: str) -> dict:
    return next(i for i in body["inputs"] if i["name"] == name)


def with_parameters(**parameters):
    def change(body):
        body["parameters"].update(parameters)
    return change


def set_input(name: str, **changes):
    def change(body):
        field(body, name).update(changes)
    return change


def padded(body: dict) -> None:
    body["parameters"]["padding"] = "x" * 70000


# (use case, how the request is broken, status, what the answer must name)
MALFORMED = [
    # values, not only datatype names
    ("weather", set_input("signal", data=["warm", 1.0]), 422, "feature 'signal' has values that are not numbers"),
    ("weather", set_input("signal", data=[True, 1.0]), 422, "feature 'signal' has values that are not numbers: bool"),
    ("weather", set_input("signal", data=["Infinity", 1.0]), 422, "feature 'signal' has values that are not numbers"),
    ("weather", set_input("signal", data=["1.5", 1.0]), 422, "feature 'signal' has values that are not numbers"),
    ("weather", set_input("signal", data=[{"v": 1}, 1.0]), 422, "feature 'signal' has values that are not numbers"),
    ("flights", set_input("signal", data=["NaN", 1.0]), 422, "feature 'signal' has values that are not numbers: string"),
    ("flights", set_input("signal", data=[None, 1.0]), 422, "feature 'signal' has missing values (null)"),
    ("flights", set_input("city", data=[None, "oslo"]), 422, "feature 'city' has values that are not strings: null"),
    ("weather", set_input("count", datatype="INT64", data=[1.5, 2]), 422, "feature 'count' has fractions"),
    ("weather", set_input("count", datatype="INT8", data=[300, 2]), 422, "feature 'count' has values outside INT8's range"),
    ("weather", set_input("count", datatype="INT64", data=[2**64, 2]), 422, "feature 'count' has values outside INT64"),
    ("weather", set_input("count", datatype="INT32", data=["3", 2]), 422, "feature 'count' has values that are not numbers"),
    ("weather", set_input("city", data=[1, "oslo"]), 422, "feature 'city' has values that are not strings: int"),
    ("weather", set_input("city", data=[{"name": "oslo"}, "oslo"]), 422, "feature 'city' has values that are not strings: dict"),
    ("weather", set_input("city", data=[["oslo"], "oslo"]), 422, "feature 'city' has values that are not strings: list"),
    ("weather", set_input("city", datatype="FP64", data=[1.0, 2.0]), 422, "feature 'city' has datatype FP64"),
    ("weather", set_input("signal", datatype="BYTES", data=["warm", "cold"]), 422, "feature 'signal' has datatype BYTES"),
    # structure
    ("weather", lambda b: b["inputs"].append(dict(field(b, "signal"))), 422, "duplicate input names ['signal']"),
    ("weather", lambda b: b["inputs"].pop(0), 422, "missing feature 'signal'"),
    ("weather", lambda b: b["inputs"].append({"name": "dep_delay", "datatype": "FP64", "shape": [2, 1], "data": [3.0, 4.0]}),
     422, "unknown feature 'dep_delay'"),
    ("weather", set_input("signal", data=None), 422, "feature 'signal': data must be a list"),
    ("weather", set_input("signal", data="1.0,2.0"), 422, "feature 'signal': data must be a list"),
    ("weather", set_input("signal", data=1.0, shape=[1]), 422, "feature 'signal': data must be a list"),
    ("weather", set_input("signal", shape=[]), 422, "feature 'signal' has shape []"),
    ("weather", set_input("signal", shape=[2, 2]), 422, "feature 'signal' has shape [2, 2]"),
    ("weather", set_input("signal", shape=[0]), 422, "feature 'signal' has shape [0]"),
    ("weather", set_input("signal", shape=[3, 1]), 422, "feature 'signal' has 2 values for shape [3, 1]"),
    ("weather", set_input("segment", data=["a"], shape=[1, 1]), 422, "inputs disagree on the number of rows"),
    ("weather", lambda b: b.update(outputs=[{"name": "probabilities"}]), 422, "outputs[0].name: unknown output 'probabilities'"),
    ("weather", lambda b: b["inputs"][0].pop("data"), 422, '"data"'),
    ("weather", lambda b: b["inputs"][0].update(shape="two"), 422, '"shape"'),
    # limits
    ("weather", lambda b: b.update(v2_request(rows(51), NUMERIC, CATEGORICAL)), 413, "serving.max_rows"),
    ("weather", set_input("city", data=["x" * 33, "oslo"]), 422, "feature 'city' has a value of 33 characters"),
    ("weather", lambda b: b.update(id="r" * 41), 422, "id: at most 40 characters"),
    ("weather", lambda b: b.update(id="a b"), 422, "id: at most 40 characters"),
    ("weather", padded, 413, "serving.max_body_bytes"),
    # where and under which day a prediction is logged
    ("weather", with_parameters(assay_event_time="../../../../tmp/escaped"), 422, "parameters.assay_event_time"),
    ("weather", with_parameters(assay_event_time="2013-01-02/../../x"), 422, "parameters.assay_event_time"),
    ("weather", with_parameters(assay_event_time="20130102T050000"), 422, "parameters.assay_event_time"),
    ("weather", with_parameters(assay_event_time="2013-02-30T05:00:00"), 422, "parameters.assay_event_time"),
    ("weather", with_parameters(assay_event_time=20130102), 422, "parameters.assay_event_time"),
    ("weather", with_parameters(assay_event_time="2012-12-31T23:00:00"), 422, "outside the use case's partitions"),
    ("weather", with_parameters(assay_event_time="2099-06-01T00:00:00Z"), 422, "ahead of the server's clock"),
    ("weather", with_parameters(assay_entity_ids=["a"]), 422, "parameters.assay_entity_ids: 1 ids for 2 rows"),
    ("weather", with_parameters(assay_entity_ids="a,b"), 422, "parameters.assay_entity_ids: must be a list"),
    ("weather", with_parameters(assay_entity_ids=["../x", "b"]), 422, "parameters.assay_entity_ids: each id"),
    ("weather", with_parameters(assay_entity_ids=["a\nb", "b"]), 422, "parameters.assay_entity_ids: each id"),
    ("weather", with_parameters(assay_entity_ids=["e" * 41, "b"]), 422, "parameters.assay_entity_ids: each id"),
    ("weather", with_parameters(assay_entity_ids=[True, {"id": 1}]), 422, "parameters.assay_entity_ids: ids must be"),
    ("weather", with_parameters(assay_event_tme="2013-01-02T05:00:00"), 422, "unknown Assay parameters ['assay_event_tme']"),
]


@pytest.mark.parametrize("use_case, break_it, status, names", MALFORMED)
def test_a_malformed_request_over_http_gets_its_4xx_naming_the_field_and_the_server_keeps_serving(
    server, use_case, break_it, status, names
):
    body = good()
    break_it(body)
    answer_status, answer = post(server, use_case, json.dumps(body).encode())
    assert (answer_status, names in answer) == (status, True), answer
    assert post(server, use_case, json.dumps(good()).encode())[0] == 200


def test_a_body_over_the_limit_is_refused_before_it_is_parsed(server):
    """Not JSON at all, and over the limit: a 413, not the parser's 422."""
    status, answer = post(server, "weather", b"{" * 70000)
    assert status == 413 and "serving.max_body_bytes" in answer
    assert post(server, "weather", b"{" * 100)[0] == 422  # under the limit, it is parsed and refused as JSON


def test_a_chunked_body_without_a_length_is_counted_as_it_arrives(server):
    import http.client

    def chunks(count: int):
        yield b'{"inputs": [], "parameters": {"padding": "'
        for _ in range(count):
            yield b"x" * 8192
        yield b'"}}'

    for count, expected in [(10, 413), (1, 422)]:  # 80 kB: over the limit; 8 kB: parsed, and refused as empty
        connection = http.client.HTTPConnection(server.host, server.http_port, timeout=30)
        connection.request("POST", "/v2/models/weather/infer", body=chunks(count),
                           headers={"content-type": "application/json"}, encode_chunked=True)
        response = connection.getresponse()
        assert response.status == expected, response.read()
        connection.close()


def test_a_gzip_body_is_bounded_by_its_decompressed_size(server):
    body = good()
    padded(body)
    status, answer = post(server, "weather", gzip.compress(json.dumps(body).encode()), {"content-encoding": "gzip"})
    assert status == 413 and "serving.max_body_bytes" in answer
    status, _ = post(server, "weather", gzip.compress(json.dumps(good()).encode()), {"content-encoding": "gzip"})
    assert status == 200
    assert post(server, "weather", b"not gzip", {"content-encoding": "gzip"})[0] == 400
    assert post(server, "weather", json.dumps(good()).encode(), {"content-encoding": "br"})[0] == 415


def test_the_body_limit_is_the_largest_of_the_served_use_cases(server):
    settings = json.loads((Path(server.root) / "settings.json").read_text())
    assert settings["assay_max_body_bytes"] == max(limits["max_body_bytes"] for limits in LIMITS.values())


def test_missing_values_sent_as_null_or_nan_are_served_when_the_spec_allows_them(server):
    body = good()
    field(body, "signal")["data"] = [None, "NaN"]
    field(body, "city")["data"] = [None, "oslo"]
    status, answer = post(server, "weather", json.dumps(body).encode())
    assert status == 200, answer
    both_null = good()
    field(both_null, "signal")["data"] = [None, None]
    field(both_null, "city")["data"] = [None, "oslo"]
    assert json.loads(answer)["outputs"][0]["data"] == json.loads(
        post(server, "weather", json.dumps(both_null).encode())[1])["outputs"][0]["data"]


def test_a_prediction_is_logged_under_the_parsed_day_with_the_entity_ids_sent(server):
    body = good()
    body["id"] = "weather-2013-03-04T05:00"
    body["parameters"].update(assay_event_time="2013-03-04T05:00:00", assay_entity_ids=["EWR_2013-03-04T05:00", 17])
    field(body, "signal")["data"] = [None, "NaN"]
    status, answer = post(server, "weather", json.dumps(body).encode())
    assert status == 200, answer
    lines = inference_log.read_day(server.inference_log, "weather", "2013-03-04")
    assert [(line["entity_id"], line["event_time"], line["features"]["signal"]) for line in lines] == [
        ("EWR_2013-03-04T05:00", "2013-03-04T05:00:00", None), ("17", "2013-03-04T05:00:00", None)]


def test_no_request_writes_outside_the_log_folder_or_logs_when_refused(server, tmp_path):
    before = sorted(p.relative_to(server.inference_log) for p in server.inference_log.rglob("*"))
    for event_time in ["../../../../" + str(tmp_path / "escaped"), "2013-01-02/../../../escaped", "../weather2/x"]:
        body = good()
        body["parameters"]["assay_event_time"] = event_time
        assert post(server, "weather", json.dumps(body).encode())[0] == 422
    assert not list(tmp_path.iterdir()) and not (Path(server.root) / "escaped").exists()
    assert sorted(p.relative_to(server.inference_log) for p in server.inference_log.rglob("*")) == before


def test_day_files_older_than_the_retention_are_pruned_when_a_new_day_starts(server):
    """flights keeps seven days: logging the 1st to the 9th of May leaves the 3rd to the 9th."""
    logged = server.inference_log / "flights"
    days = [f"2013-05-0{d}" for d in range(1, 10)]
    for day in days:
        body = good()
        body["parameters"]["assay_event_time"] = f"{day}T10:00:00"
        assert post(server, "flights", json.dumps(body).encode())[0] == 200
    assert sorted(p.stem for p in logged.glob("2013-*.jsonl")) == days[2:]
    assert (server.inference_log / "weather").exists()  # another model's log is its own


def test_pruning_keeps_the_retention_up_to_the_newest_day_and_ignores_other_files(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    for day in range(1, 8):
        (folder / f"2013-01-0{day}.jsonl").write_text("{}\n")
    (folder / "notes.jsonl").write_text("kept\n")
    deleted = inference_log.prune(folder, date(2013, 1, 7), 3)
    assert [p.name for p in deleted] == [f"2013-01-0{d}.jsonl" for d in range(1, 5)]
    assert sorted(p.name for p in folder.iterdir()) == ["2013-01-05.jsonl", "2013-01-06.jsonl", "2013-01-07.jsonl",
                                                        "notes.jsonl"]


def test_a_serving_section_shorter_than_the_drift_window_or_misspelt_fails_at_load(tmp_path):
    """flights reads seven days of served requests for drift: keeping three would starve it."""
    text = (REPO_ROOT / "usecases" / "flights.yaml").read_text()
    for serving, problem in [("log_retention_days: 3", "serving.log_retention_days: 3 days"),
                             ("max_row: 10", "serving.max_row: Extra inputs"),
                             ("max_event_time_ahead: soon", "serving.max_event_time_ahead")]:
        (tmp_path / "flights.yaml").write_text(f"{text}\nserving:\n  {serving}\n")
        with pytest.raises(SpecError, match=problem):
            load_spec(tmp_path / "flights.yaml")
    (tmp_path / "flights.yaml").write_text(f"{text}\nserving:\n  max_event_time_ahead: 2h\n  log_retention_days: 7\n")
    assert load_spec(tmp_path / "flights.yaml").serving.max_event_time_ahead == timedelta(hours=2)


def test_an_event_time_is_bounded_by_the_clock_it_is_checked_against():
    from assay.spec import Serving
    from serving.validation import RequestRules

    rules = RequestRules(None, Serving(max_event_time_ahead="1d"), (date(2013, 1, 1), date(2100, 1, 1)))
    now = datetime(2030, 1, 1, 12, tzinfo=timezone.utc)
    assert rules.event_time("2030-01-02T11:00:00", now=now) == datetime(2030, 1, 2, 11)
    assert rules.event_time("2030-01-02T13:00:00+02:00", now=now).date() == date(2030, 1, 2)
    with pytest.raises(ValueError, match="ahead of the server's clock"):
        rules.event_time("2030-01-02T13:00:00Z", now=now)
