"""Atomic file writes: a reader (or a resumed run) never sees half a file.

Everything cotrain writes that another step reads back (metrics, reports, records, caches,
fingerprints) goes through a temporary file in the same folder and ``os.replace``; an error
while writing removes the temporary file and leaves the old target untouched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` when the block ends cleanly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any, **dumps: Any) -> None:
    """JSON, by default indented, keys sorted and unknown types as ``str`` (the run outputs' form)."""
    opts = {"indent": 2, "sort_keys": True, "default": str, **dumps}
    write_text_atomic(path, json.dumps(obj, **opts))


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[Any], **dumps: Any) -> None:
    """One JSON document per line."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, **dumps) + "\n")


def replace_dir(tmp: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Move folder ``tmp`` to ``final``, replacing an existing ``final`` without a moment where neither exists."""
    import shutil

    tmp, final = Path(tmp), Path(final)
    if final.exists():
        old = final.with_name(final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    return final
