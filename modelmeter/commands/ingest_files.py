"""``modelmeter ingest FILE.jsonl…``: land JSON Lines events in the lake as Firehose would."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.lake import Lake
from common.progress import Progress
from ingest.files import ingest_files


def run(args: Any) -> int:
    paths = [Path(p) for p in args.files]
    folders = [str(p) for p in paths if p.is_dir()]
    if folders:
        raise UserError(f"not a file but a folder: {', '.join(folders)} "
                        f"(name the .jsonl files, e.g. {folders[0]}/*.jsonl)")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"no such file: {', '.join(missing)}")
    lake = Lake.open(args.lake)
    # bytes, not lines: the total is known before reading; a bar on a terminal, a few lines on stderr otherwise
    with Progress("ingest", total=sum(p.stat().st_size for p in paths), unit="bytes") as progress:
        result = ingest_files(lake, paths, progress=progress.update)
    for problem in result.problems:
        print(f"quarantined {problem}", file=sys.stderr)
    if result.quarantined > len(result.problems):
        print(f"… and {result.quarantined - len(result.problems)} more quarantined lines", file=sys.stderr)
    print(f"read {result.read} / landed {result.landed} / quarantined {result.quarantined}  (lake: {lake.uri})")
    return 0
