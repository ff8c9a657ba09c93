"""Reading a drift input file with typed errors."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from biotune.errors import InputFormatError


def read_frame(uri: str | os.PathLike, role: str = "data") -> pd.DataFrame:
    """A parquet file (local or s3://) as a frame, with typed errors: MissingInputError when it is
    not there, InputFormatError when it is not parquet (naming what it is) or cannot be read.

    Read with Arrow's threads off: pyarrow's I/O thread pool can abort the interpreter at exit
    ("terminate called without an active exception", rc 134; apache/arrow#34314), which is what
    made ``drift psi`` die once in a few runs. Drift inputs are feature tables, small enough."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from biotune import datafiles, storage

    uri = str(uri)
    with storage.local_copy(uri) as local:
        kind = datafiles.sniff(local)
        if kind != "parquet":
            what = {"xpt": "a SAS XPORT file", "zip": "a ZIP archive", "gzip": "gzip-compressed"}.get(kind or "", "")
            if not what:
                with open(local, "rb") as fh:
                    what = "a parquet file cut short (no footer)" if fh.read(4) == b"PAR1" else "not parquet"
            raise InputFormatError(f"the {role} file {Path(uri).name} is {what}", where=uri,
                                   fix=f"pass the {role} features as a parquet file (one column per feature)")
        try:
            table = pq.read_table(local, use_threads=False, pre_buffer=False)
            return table.to_pandas(use_threads=False)
        except (OSError, pa.ArrowException) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise storage.os_error(exc, uri, "read") from exc
            raise InputFormatError(f"the {role} file {Path(uri).name} cannot be read as parquet: {exc}", where=uri,
                                   fix="write it again as a complete parquet file") from exc

