"""Raw assets: one per source table of a use case, loaded from the landing zone into DuckDB.

Each materialization reads one landing file, holds it to the table's contract, and replaces the
partition in one transaction, so a rerun replaces and never duplicates. Its checks are the data
gates; they are declared on the asset itself because they are computed from the frame that was
just read (no second pass over the warehouse, no extra step per partition).
"""


import hashlib
import warnings
from datetime import date

import dagster as dg

from assay import asset_keys
from assay.contract import (
    DATA_GATES,
    ContractViolation,
    GateResult,
    content_hash,
    data_gates,
    raw_table_name,
    read_landing_file,
    sha256_file,
)
from assay.spec import Table, UseCase
from resources.landing_zone import LandingZone
from resources.raw_tables import store_partition
from resources.warehouse import Warehouse


def table_schema(table: Table) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, column.type, constraints=dg.TableColumnConstraints(nullable=column.nullable))
            for name, column in table.columns.items()
        ]
    )


def contract_version(table: Table) -> str:
    """Code version of a raw asset: the contract it enforces (a contract change is a code change)."""
    return hashlib.sha256(table.model_dump_json().encode()).hexdigest()[:16]


def _check(asset_key: dg.AssetKey, result: GateResult) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=result.name,
        passed=result.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.description,
        metadata={k: v if isinstance(v, (int, float, str)) else dg.MetadataValue.json(v)
                  for k, v in result.metadata.items() if v is not None},
    )


def _gate_specs(key: dg.AssetKey, partitions: dg.PartitionsDefinition | None) -> list[dg.AssetCheckSpec]:
    """Per-partition data gates: a bad file on one day must not block automation of the other days
    (a check without partitions reports one latest result for the whole asset). Partitioned checks
    are a preview in Dagster 1.13; the warning saying so is silenced here, where it is chosen."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [dg.AssetCheckSpec(g, asset=key, blocking=True, description=d, partitions_def=partitions)
                for g, d in DATA_GATES.items()]


def build_raw_asset(
    spec: UseCase, name: str, table: Table, partitions: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    key = asset_keys.raw(spec, name)

    @dg.asset(
        key=key,
        description=f"{table.description}\n\nLoaded from the landing zone into DuckDB "
        f"`{raw_table_name(spec.name, name)}`, held to the contract in `usecases/{spec.name}.yaml`.",
        partitions_def=partitions if table.partitioned else None,
        group_name=f"{spec.name}_ingest",
        owners=[spec.owner],
        kinds={"duckdb", "polars"},
        tags={"stage": "raw", "use_case": spec.name},
        code_version=contract_version(table),
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=spec.freshness.raw),
        metadata={
            "dagster/table_name": f"warehouse.{raw_table_name(spec.name, name)}",
            "dagster/column_schema": table_schema(table),
            "contract_key": ", ".join(table.key),
        },
        check_specs=_gate_specs(key, partitions if table.partitioned else None),
        # A quarantined file materializes nothing: the partition keeps its previous data and version.
        output_required=False,
    )
    def raw_table(context: dg.AssetExecutionContext, landing: LandingZone, warehouse: Warehouse):
        partition_key = context.partition_key if table.partitioned else None
        partition = date.fromisoformat(partition_key) if partition_key else None
        path = landing.path_for(spec.name, name, partition_key)
        if not path.exists():
            earlier = landing.quarantined(spec.name, name, partition_key)
            note = f" (its last delivery was quarantined: {earlier[-1]['reason']})" if earlier else ""
            raise dg.Failure(f"{spec.name}/{name}: no landing file at {path}{note}")
        landing_sha256 = sha256_file(path)
        try:
            frame = read_landing_file(path, table, partition, spec.timezone)
        except ContractViolation as violation:
            moved_to = landing.quarantine(spec.name, name, path, violation)
            yield _check(key, GateResult(
                "contract", False, f"{violation} (quarantined to {moved_to})",
                {**violation.as_metadata(), "quarantined_to": str(moved_to), "landing_sha256": landing_sha256},
            ))
            raise dg.Failure(
                description=f"{violation}; file quarantined to {moved_to}; the stored partition is unchanged",
                allow_retries=False,
            )

        trailing = store_partition(
            warehouse, spec.name, name, table, frame, partition, str(path), landing_sha256
        )
        version = content_hash(frame, table)
        checks = [
            GateResult("contract", True, "the file conforms to the contract",
                       {"rows": frame.height, "landing_sha256": landing_sha256}),
            *data_gates(frame, table, trailing),
        ]
        yield dg.MaterializeResult(
            asset_key=key,
            data_version=dg.DataVersion(version),
            metadata={
                "dagster/row_count": frame.height,
                "dagster/column_schema": table_schema(table),
                "landing_file": dg.MetadataValue.path(str(path)),
                "landing_sha256": landing_sha256,
                "content_hash": version,
                "table": raw_table_name(spec.name, name),
            },
            check_results=[_check(key, c) for c in checks],
        )

    return raw_table


def build_raw_assets(spec: UseCase, partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    return [build_raw_asset(spec, name, table, partitions) for name, table in spec.tables.items()]


