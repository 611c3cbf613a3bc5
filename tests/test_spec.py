"""Use-case specs: validated on load with errors that name the file and the field."""

from __future__ import annotations

import pytest
import yaml

from assay.settings import REPO_ROOT
from assay.spec import SpecError, load_spec, load_specs


def _write(tmp_path, name: str, mutate) -> object:
    spec = yaml.safe_load((REPO_ROOT / "usecases" / "flights.yaml").read_text())
    mutate(spec)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_the_repository_specs_load():
    # every spec in usecases/, whatever a team has added beside the two the repository ships
    names = [spec.name for spec in load_specs(REPO_ROOT / "usecases")]
    assert names == sorted(p.stem for p in (REPO_ROOT / "usecases").glob("*.yaml"))
    assert {"flights", "weather"} <= set(names)


def test_a_spec_without_a_replay_source_loads(tmp_path):
    spec = load_spec(_write(tmp_path, "flights", lambda s: s.pop("source")))
    assert spec.source is None


def test_a_spec_without_a_latency_budget_leaves_it_to_be_derived_at_deploy(tmp_path):
    spec = load_spec(_write(tmp_path, "flights", lambda s: s["release"].pop("latency_p99_ms")))
    assert spec.release.latency_p99_ms is None


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (lambda s: s["tables"]["flights"]["columns"]["dep_time"].update(type="integer"), "tables.flights.columns.dep_time.type", "Input should be"),
        (lambda s: s["gates"].update(min_roc_acu=0.7), "gates.min_roc_acu", "Extra inputs are not permitted"),
        (lambda s: s["tables"]["flights"]["columns"]["month"].update(min=13), "tables.flights.columns.month", "above max"),
        (lambda s: s["features"].update(slices=["tailnum"]), "features", "slices must be feature columns"),
        (lambda s: s["tables"]["flights"].update(key=["flight_id"]), "tables.flights", "not in the contract"),
        (lambda s: s["freshness"].update(raw="soon"), "freshness.raw", "not a duration"),
        (lambda s: s.update(owner="flight ops"), "owner", "team:<name>"),
    ],
)
def test_a_bad_spec_names_the_file_and_the_field(tmp_path, mutate, field, message):
    path = _write(tmp_path, "flights", mutate)
    with pytest.raises(SpecError) as error:
        load_spec(path)
    assert str(path) in str(error.value)
    assert field in str(error.value)
    assert message in str(error.value)


def test_a_spec_whose_name_differs_from_its_file_is_refused(tmp_path):
    path = _write(tmp_path, "delays", lambda s: None)
    with pytest.raises(SpecError, match="must match the file name"):
        load_spec(path)


def test_a_spec_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "flights.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(SpecError, match=f"{path}: expected a mapping"):
        load_spec(path)
