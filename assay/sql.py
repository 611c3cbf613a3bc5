"""SQL identifiers built from names a spec declares, quoted by sqlglot rather than by hand.

Spec names are validated at load (assay/spec.py's NAME rule); quoting them here as well means a name
that reaches SQL another way (a column a landing file brings, a future spec field) can never end a
quoted identifier early and become SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from sqlglot import exp

DIALECT = "duckdb"


def identifier(name: str) -> str:
    """One quoted identifier: a column, a schema."""
    return exp.to_identifier(name, quoted=True).sql(DIALECT)


def identifiers(names: Iterable[str]) -> str:
    """A comma-separated list of quoted identifiers, for a SELECT or a column list."""
    return ", ".join(identifier(name) for name in names)


def table(schema: str, name: str) -> str:
    """A quoted schema-qualified table: `"schema"."name"`."""
    return exp.table_(name, db=schema, quoted=True).sql(DIALECT)



def equals_date(column: str, day: date) -> str:
    """`"column" = CAST('YYYY-MM-DD' AS DATE)`: a partition predicate, for DuckDB or a Delta table's
    DataFusion, from a parsed date only (never text a caller sent)."""
    literal = exp.cast(exp.Literal.string(date.isoformat(day)), exp.DataType.Type.DATE)
    return exp.EQ(this=exp.Column(this=exp.to_identifier(column, quoted=True)), expression=literal).sql(DIALECT)
