"""AWS Data Exports CUR 2.0 files → immutable snapshots of the bill in the lake (``billing/cur/…``).

An import reads Parquet (with CUR 2.0's map columns ``product`` and ``resource_tags``) or CSV / CSV.gz (where AWS
writes the maps as JSON text), from files, folders or an ``s3://`` prefix, exactly with CUR 2.0's column names. Every
file is checked before anything is written: a file that lacks a required column, or a row that cannot be read
(a date, an amount), fails the whole import with its file and row, and nothing is imported. The rows are stored per
billing period as one snapshot:

    billing/cur/billing_period=YYYY-MM/snapshot=<UTC time>-<hash>/lines.parquet
    billing/cur/billing_period=YYYY-MM/snapshot=<UTC time>-<hash>/manifest.json    (written last: the commit)

CUR restates a period until it is final (AWS: at least daily, and the previous period for two weeks after it
ends), so each import is a new snapshot; the newest snapshot with a manifest is the one in force, and older ones
stay readable. A snapshot is *final* when every line carries an invoice id (``bill_invoice_id`` is blank until
AWS finalises the bill).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from common.constants import BILLING_CUR
from common.contracts import CUR_REQUIRED_COLUMNS, cur_lines_schema
from common.errors import UserError
from common.lake import Lake
from common.progress import ProgressCallback, no_progress

MANIFEST = "manifest.json"
LINES = "lines.parquet"
_SUFFIXES = (".parquet", ".csv", ".csv.gz")
#: Rows named in an import's error, at most (the count of the rest follows).
_MAX_PROBLEMS = 20


@dataclass
class Snapshot:
    """One imported snapshot of one billing period (its ``manifest.json``)."""

    billing_period: str
    snapshot_id: str
    imported_at: str
    source_files: list[str]
    rows: int
    currency: str
    final: bool
    line_cost_total: str  # exact decimal text: the sum of line_cost over every line
    path: str = field(default="", compare=False)

    @property
    def prefix(self) -> tuple[str, str, str]:
        return BILLING_CUR, f"billing_period={self.billing_period}", f"snapshot={self.snapshot_id}"


# --- reading the export ------------------------------------------------------------------------------------------

def _export_files(paths: list[str], workdir: Path) -> list[tuple[str, Path]]:
    """``(name as given, local path)`` of every export file under ``paths`` (S3 objects are copied to ``workdir``)."""
    found: list[tuple[str, Path]] = []
    for given in paths:
        if given.startswith("s3://"):
            fs, base = pafs.FileSystem.from_uri(given)
            infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
            if not infos:
                infos = [fs.get_file_info(base)]
            for info in sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path):
                if info.path.lower().endswith(_SUFFIXES):
                    local = workdir / f"{len(found):05d}-{Path(info.path).name}"
                    pafs.copy_files(info.path, str(local), source_filesystem=fs,
                                    destination_filesystem=pafs.LocalFileSystem())
                    found.append((f"s3://{info.path}", local))
            continue
        path = Path(given)
        if path.is_dir():
            found += [(str(p), p) for p in sorted(path.rglob("*"))
                      if p.is_file() and p.name.lower().endswith(_SUFFIXES)]
        elif path.is_file():
            found.append((str(path), path))
        else:
            raise UserError(f"{given}: no such file or folder")
    if not found:
        raise UserError(f"no CUR export files (.parquet, .csv, .csv.gz) in {', '.join(paths)}")
    return found


def _columns(con: duckdb.DuckDBPyConnection, reader: str) -> dict[str, str]:
    return {row[0]: row[1] for row in con.execute(f"describe select * from {reader}").fetchall()}


def _reader(path: Path) -> str:
    quoted = str(path).replace("'", "''")
    if path.name.lower().endswith(".parquet"):
        return f"read_parquet('{quoted}', file_row_number = true)"
    # AWS's CSV has a header line; every value is read as text and typed below, so nothing is guessed
    return f"read_csv('{quoted}', header = true, all_varchar = true, quote = '\"')"


def _select(name: str, path: Path, columns: dict[str, str]) -> str:
    """The normalising ``select`` of one file: CUR columns typed as :func:`cur_lines_schema` says, plus ``ok_*``
    flags telling, per row, which values could not be read."""
    parquet = path.name.lower().endswith(".parquet")

    def col(c: str) -> str:
        return c if c in columns else "null"

    def text(c: str) -> str:
        return f"nullif(cast({col(c)} as varchar), '')"

    def ts(c: str) -> str:
        return f"try_cast({col(c)} as timestamptz)"

    def money(c: str) -> str:  # AWS writes DOUBLEs with up to 10 decimals: exact at 10, then our DECIMAL(38,12)
        return f"cast(try_cast(try_cast({col(c)} as double) as decimal(38, 10)) as decimal(38, 12))"

    def json_text(c: str) -> str:
        if c not in columns:
            return "null"
        if parquet and columns[c].upper().startswith("MAP"):
            return f"to_json({c})::varchar"
        return f"json({text(c)})::varchar"  # JSON text in CSV: normalised as to_json writes it

    region = ("coalesce(" + text("product_region_code") + ", " +
              (("json_extract_string(" + json_text("product") + ", '$.region')") if "product" in columns else "null")
              + ")")
    row = "file_row_number + 1" if parquet else "row_number() over () + 1"  # CSV: line 1 is the header
    net = money("line_item_net_unblended_cost")
    return f"""
        select
            strftime({ts("bill_billing_period_start_date")} at time zone 'UTC', '%Y-%m') as billing_period,
            {ts("bill_billing_period_start_date")} as bill_billing_period_start_date,
            {text("bill_invoice_id")} as bill_invoice_id,
            {text("bill_billing_entity")} as bill_billing_entity,
            {text("line_item_usage_account_id")} as line_item_usage_account_id,
            {text("line_item_line_item_type")} as line_item_line_item_type,
            {ts("line_item_usage_start_date")} as line_item_usage_start_date,
            {ts("line_item_usage_end_date")} as line_item_usage_end_date,
            {text("line_item_product_code")} as line_item_product_code,
            coalesce({text("line_item_usage_type")}, '') as line_item_usage_type,
            {text("line_item_operation")} as line_item_operation,
            {text("line_item_resource_id")} as line_item_resource_id,
            {text("line_item_iam_principal")} as line_item_iam_principal,
            {text("line_item_line_item_description")} as line_item_line_item_description,
            {region} as region,
            {text("pricing_unit")} as pricing_unit,
            {money("line_item_usage_amount")} as line_item_usage_amount,
            {money("line_item_unblended_cost")} as line_item_unblended_cost,
            {net} as line_item_net_unblended_cost,
            coalesce({net}, {money("line_item_unblended_cost")}) as line_cost,
            {text("line_item_currency_code")} as line_item_currency_code,
            {json_text("resource_tags")} as resource_tags,
            '{name.replace("'", "''")}' as source_file,
            cast({row} as bigint) as source_row,
            {col("line_item_usage_amount")} is not null and {money("line_item_usage_amount")} is null as bad_amount,
            {col("line_item_unblended_cost")} is not null and {money("line_item_unblended_cost")} is null as bad_cost,
            {col("line_item_net_unblended_cost")} is not null and {net} is null as bad_net
        from {_reader(path)}"""


_PROBLEMS = {
    "billing_period is null": "bill_billing_period_start_date is not a timestamp",
    "line_item_usage_start_date is null": "line_item_usage_start_date is not a timestamp",
    "line_item_usage_end_date is null": "line_item_usage_end_date is not a timestamp",
    "line_item_line_item_type is null": "line_item_line_item_type is empty",
    "line_item_product_code is null": "line_item_product_code is empty",
    "line_item_usage_account_id is null": "line_item_usage_account_id is empty",
    "line_item_currency_code is null": "line_item_currency_code is empty",
    "bad_amount or line_item_usage_amount is null": "line_item_usage_amount is not a number",
    "bad_cost or line_item_unblended_cost is null": "line_item_unblended_cost is not a number",
    "bad_net": "line_item_net_unblended_cost is not a number",
}


def read_export(paths: list[str], *, progress: ProgressCallback = no_progress) -> pa.Table:
    """Every line of the CUR 2.0 files under ``paths``, as :func:`cur_lines_schema` rows; ``progress`` is told
    ``(files checked, files, file)``.

    Raises:
        UserError: a file lacks required columns (naming them), or rows cannot be read (naming file and row).
    """
    with tempfile.TemporaryDirectory(prefix="modelmeter-cur-") as tmp:
        files = _export_files(paths, Path(tmp))
        con = duckdb.connect(":memory:")
        con.execute("set TimeZone = 'UTC'")
        selects, problems = [], []
        for checked, (name, path) in enumerate(files, start=1):
            progress(checked - 1, len(files), name)
            try:
                columns = _columns(con, _reader(path))
            except duckdb.Error as exc:
                raise UserError(f"{name}: not a CUR 2.0 export file ({str(exc).splitlines()[0]})") from None
            missing = [c for c in CUR_REQUIRED_COLUMNS if c not in columns]
            if missing:
                problems.append(f"{name}: missing CUR 2.0 column{'s' if len(missing) > 1 else ''} "
                                f"{', '.join(missing)}")
                continue
            selects.append(_select(name, path, columns))
        if problems:
            raise UserError("not imported: " + "; ".join(problems))
        con.execute("create table lines as " + "\nunion all\n".join(selects))
        _refuse_bad_rows(con)
        names = cur_lines_schema().names
        table = con.execute(f"select {', '.join(names)} from lines order by source_file, source_row").to_arrow_table()
        return table.cast(cur_lines_schema())


def _refuse_bad_rows(con: duckdb.DuckDBPyConnection) -> None:
    cases = " ".join(f"when {cond} then '{why}'" for cond, why in _PROBLEMS.items())
    bad = con.execute(f"select source_file, source_row, case {cases} end as why from lines "
                      f"where ({') or ('.join(_PROBLEMS)}) order by source_file, source_row").fetchall()
    if bad:
        listed = "; ".join(f"{f}:{r}: {why}" for f, r, why in bad[:_MAX_PROBLEMS])
        more = f" (and {len(bad) - _MAX_PROBLEMS} more rows)" if len(bad) > _MAX_PROBLEMS else ""
        raise UserError(f"not imported: {len(bad)} rows cannot be read: {listed}{more}")


# --- snapshots in the lake ---------------------------------------------------------------------------------------

def import_export(*, lake: Lake, paths: list[str], now: datetime | None = None,
                  progress: ProgressCallback = no_progress) -> list[Snapshot]:
    """Import the CUR files under ``paths``: one new snapshot per billing period they hold; returns them.

    ``progress`` is told ``(files checked, files, file)`` while the files are read, then ``(periods written,
    periods, period)``.

    Raises:
        UserError: see :func:`read_export`; or a period whose lines carry more than one currency.
    """
    table = read_export(paths, progress=progress)
    now = now or datetime.now(UTC)
    snapshots = []
    con = duckdb.connect(":memory:")
    con.register("lines", table)
    periods = [r[0] for r in con.execute("select distinct billing_period from lines order by 1").fetchall()]
    for written, period in enumerate(periods):
        progress(written, len(periods), f"billing period {period}")
        part = con.execute("select * from lines where billing_period = ?", [period]).to_arrow_table().cast(table.schema)
        snapshots.append(_write_snapshot(lake, period, part, now))
    progress(len(periods), len(periods), "")
    return snapshots


def _write_snapshot(lake: Lake, period: str, lines: pa.Table, now: datetime) -> Snapshot:
    con = duckdb.connect(":memory:")
    con.register("lines", lines)
    currencies = [r[0] for r in con.execute("select distinct line_item_currency_code from lines order by 1").fetchall()]
    if len(currencies) != 1:
        raise UserError(f"billing period {period} has lines in {', '.join(currencies)}: one currency per period")
    total, unfinal = con.execute("select sum(line_cost), count(*) filter (where bill_invoice_id is null) "
                                 "from lines").fetchone() or (None, 0)
    sources = sorted({s for s in lines.column("source_file").to_pylist()})
    digest = hashlib.sha256(json.dumps([sources, lines.num_rows, str(total)]).encode()).hexdigest()[:8]
    snapshot = Snapshot(billing_period=period, snapshot_id=f"{now:%Y%m%dT%H%M%S%fZ}-{digest}",
                        imported_at=now.isoformat(), source_files=sources, rows=lines.num_rows,
                        currency=currencies[0], final=unfinal == 0, line_cost_total=_text(total))
    lake.write_parquet(lines, *snapshot.prefix, LINES)
    snapshot.path = lake.write_bytes(json.dumps(asdict(snapshot), indent=2).encode(), *snapshot.prefix, MANIFEST)
    return snapshot


def _text(value: object) -> str:
    return format(value, "f") if value is not None else "0"


def list_snapshots(*, lake: Lake, period: str) -> list[Snapshot]:
    """The committed snapshots of ``period`` (those with a manifest), oldest first."""
    out = []
    for path in lake.list_files(BILLING_CUR, f"billing_period={period}", suffix=MANIFEST):
        with lake.fs.open_input_stream(path) as src:
            data = json.loads(src.read())
        data.pop("path", None)
        out.append(Snapshot(**data, path=path))
    return sorted(out, key=lambda s: s.snapshot_id)


def snapshot_in_force(*, lake: Lake, period: str, snapshot_id: str | None = None) -> Snapshot:
    """The newest snapshot of ``period`` (or the one named).

    Raises:
        UserError: none imported yet (or no such snapshot).
    """
    snapshots = list_snapshots(lake=lake, period=period)
    if snapshot_id:
        snapshots = [s for s in snapshots if s.snapshot_id == snapshot_id]
    if not snapshots:
        raise UserError(f"no CUR imported for billing period {period} in {lake.uri}"
                        + (f" with snapshot {snapshot_id}" if snapshot_id else "")
                        + ": run `modelmeter billing import PATH` first")
    return snapshots[-1]


def read_snapshot(*, lake: Lake, snapshot: Snapshot) -> pa.Table:
    """The snapshot's lines (from a folder or an S3 lake alike)."""
    with lake.fs.open_input_file(lake.path(*snapshot.prefix, LINES)) as src:
        return pq.read_table(src).cast(cur_lines_schema())
