"""SAS XPORT (v5) files through pyreadstat, with typed errors for files that are not XPORT."""

from __future__ import annotations

from pathlib import Path

from biotune.errors import InputFormatError, MissingInputError

XPORT_MAGIC = b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!"


def check_xport(path: str | Path) -> None:
    """Fail with InputFormatError unless ``path`` starts like a SAS XPORT v5 file."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"no file {path.name}", where=str(path), fix="check the path")
    with open(path, "rb") as fh:
        head = fh.read(80)
    if not head.startswith(XPORT_MAGIC):
        raise InputFormatError(
            f"{path.name} is not a SAS XPORT file (its first bytes are {head[:24]!r})",
            where=str(path),
            fix="download the .XPT file again from the CDC NHANES site; do not convert or rename other formats",
        )


def read_xport(path: str | Path, columns: list[str] | None = None, row_limit: int | None = None):
    """Read an XPORT file (optionally some columns, the first ``row_limit`` rows) into a frame."""
    import pyreadstat

    check_xport(path)
    try:
        frame, _ = pyreadstat.read_xport(str(path), usecols=columns, row_limit=row_limit or 0)
    except pyreadstat.ReadstatError as exc:
        raise InputFormatError(
            f"{Path(path).name} is truncated or corrupt: {exc}", where=str(path),
            fix="download the .XPT file again from the CDC NHANES site",
        ) from exc
    if columns:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise MissingInputError(f"{Path(path).name} lacks column(s) {', '.join(missing)}", where=str(path),
                                    fix="use the NHANES 2013-2014 release of this file")
    return frame
