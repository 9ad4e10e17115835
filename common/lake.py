"""The lake: a local folder or an ``s3://bucket/prefix`` URI, with the same layout in both (DESIGN.md)."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from common.constants import DEFAULT_LAKE, ENV_LAKE

PARQUET_COMPRESSION = "zstd"
#: Age after which a writer's temporary file (``.<name>.<uuid>.tmp``, local lakes only) is a leftover of a writer that
#: was killed before its rename. A live writer renames within seconds (the largest file, a day's curated
#: ``usage_cost`` of 10 M events, takes under a minute), so an hour is far beyond any write still under way, with
#: room for clock differences on a shared filesystem; a younger file is left alone.
STALE_TMP_AGE = timedelta(hours=1)
_TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class Lake:
    """Where the lake lives. ``fs`` is a pyarrow filesystem, ``base`` the root path inside it (no trailing slash)."""

    uri: str
    fs: pafs.FileSystem
    base: str

    @classmethod
    def open(cls, uri: str | os.PathLike[str] | None = None) -> Lake:
        """Open ``uri``, else ``$MODELMETER_LAKE``, else ``./lake``. A local folder is created when missing."""
        uri = str(uri or os.environ.get(ENV_LAKE) or DEFAULT_LAKE)
        if uri.startswith("s3://"):
            fs, base = pafs.FileSystem.from_uri(uri)
            return cls(uri=uri.rstrip("/"), fs=fs, base=base.rstrip("/"))
        path = Path(uri).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return cls(uri=str(path), fs=pafs.LocalFileSystem(), base=str(path))

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        """Path inside ``fs`` of a lake-relative location."""
        return "/".join([self.base, *[p.strip("/") for p in parts if p]])

    def url(self, *parts: str) -> str:
        """A location as DuckDB and people read it: an absolute local path, or an ``s3://`` URL."""
        if self.is_local:
            return self.path(*parts)
        return "s3://" + self.path(*parts)

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def list_files(self, *parts: str, suffix: str = ".parquet") -> list[str]:
        """Every file under a lake-relative prefix (recursively), as ``fs`` paths, sorted.

        Hidden names (``.``: a writer's temporary file; ``_``: scratch) are never listed, whatever ``suffix``.
        """
        return [info.path for info in self.list_file_infos(*parts, suffix=suffix)]

    def list_file_infos(self, *parts: str, suffix: str = ".parquet") -> list[pafs.FileInfo]:
        """:meth:`list_files` with each file's size and modification time, from the same one listing (on S3 the
        LIST response carries both: no request per file), sorted by path."""
        selector = pafs.FileSelector(self.path(*parts), recursive=True, allow_not_found=True)
        return sorted(
            (info for info in self.fs.get_file_info(selector)
             if info.type == pafs.FileType.File and info.path.endswith(suffix)
             and not info.base_name.startswith((".", "_"))),
            key=lambda info: info.path,
        )

    def remove_stale_tmp(self, *parts: str, older_than: timedelta = STALE_TMP_AGE) -> list[str]:
        """Delete the temporary files killed writers left under a lake-relative prefix (recursively) that are older
        than ``older_than`` by the file's own mtime; return their ``fs`` paths, sorted.

        Only a local lake has them: on S3 a PUT is atomic and no temporary object is ever written.
        """
        if not self.is_local:
            return []
        selector = pafs.FileSelector(self.path(*parts), recursive=True, allow_not_found=True)
        cutoff = time.time() - older_than.total_seconds()
        stale = sorted(
            info.path for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File and info.base_name.startswith(".")
            and info.base_name.endswith(_TMP_SUFFIX) and info.mtime is not None and info.mtime.timestamp() < cutoff
        )
        for path in stale:
            try:
                os.remove(path)
            except FileNotFoundError:  # already gone: another cleaner was first
                pass
        return stale

    def write_parquet(self, table: pa.Table, *parts: str) -> str:
        """Write ``table`` to a lake-relative file, atomically: readers see the whole file or none of it.

        Locally the file is written under a hidden temporary name and renamed; an S3 PUT is atomic by itself.
        """
        target = self.path(*parts)
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        if not self.is_local:
            pq.write_table(table, target, filesystem=self.fs, compression=PARQUET_COMPRESSION)
            return target
        directory, name = target.rsplit("/", 1)
        tmp = f"{directory}/.{name}.{uuid.uuid4().hex}{_TMP_SUFFIX}"
        pq.write_table(table, tmp, compression=PARQUET_COMPRESSION)
        os.replace(tmp, target)
        return target

    def write_bytes(self, data: bytes, *parts: str) -> str:
        """Write a small file (manifests, catalog versions) atomically."""
        target = self.path(*parts)
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        if not self.is_local:
            with self.fs.open_output_stream(target) as out:
                out.write(data)
            return target
        directory, name = target.rsplit("/", 1)
        tmp = f"{directory}/.{name}.{uuid.uuid4().hex}{_TMP_SUFFIX}"
        with open(tmp, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
        return target

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open_input_stream(self.path(*parts)) as src:
            return src.read()

    def delete(self, fs_path: str) -> None:
        self.fs.delete_file(fs_path)
