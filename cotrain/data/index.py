"""Memory-mapped record index: O(1) access to the records of a JSONL file of any size.

A dataset of 10 million records must not live as Python objects (one parsed record costs a few
kilobytes of heap, in every rank and every dataloader worker). ``RecordIndex`` keeps only a numpy
table of ``(start, end, line)`` byte offsets per non-blank line, written once to a cache file and
memory-mapped on load, and parses a record when it is asked for.

Workflow::

    index = RecordIndex.build_or_load("train.jsonl", rank=rank, world_size=world)
    len(index); index.record(i)   # seek, read one line, json.loads, validate_record

The cache file (``<records>.cotrain-index.npy`` beside the records, or in ``cache_dir``) is one
int64 ``.npy`` array so that a single atomic rename publishes it and ``np.load(mmap_mode="r")``
maps it. Its first two rows are a header (magic, format version, record count; then the records
file's fingerprint: size, mtime_ns, and a hash of its first and last MiB); row ``2 + i`` is record
``i``. A changed records file has another fingerprint, so its stale index is rebuilt, never used.
In distributed runs rank 0 builds and the other ranks poll until a cache file with the right
fingerprint appears; ``cache_dir`` must then be shared by the ranks passed in (pass the local rank
for a node-local directory).

Lines end at ``\\n`` (``\\r\\n`` works; the ``\\r`` is dropped); a blank line is one of ASCII
whitespace only and is skipped, as ``cotrain.records.iter_records`` skips it. Line numbers in
errors count every line, blank ones included, so they match an editor.

This module owns the index and single-record access. It must not check id uniqueness across the
file (that needs every record; ``iter_records`` does it when validating a whole file), open
images, or build prompts.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cotrain.errors import CotrainError, RecordError
from cotrain.records import validate_record

INDEX_SUFFIX = ".cotrain-index.npy"
INDEX_MAGIC = 0x636F747261696E49  # "cotrainI" as big-endian bytes: marks our files among other .npy
INDEX_VERSION = 1
"""Bumped whenever the table layout changes, so old cache files are rebuilt rather than misread."""
HEADER_ROWS = 2
CHUNK_BYTES = 16 << 20
"""Bytes read per step while building: large enough that numpy, not Python, does the work, small
enough to keep temporaries small (10M lines, 2.7 GB: built in 3-5 s on 2 cores, faster than with 64 MiB).
The buffer is reused, so memory is this plus a few int64 arrays of the line count."""
HASH_SPAN = 1 << 20
"""Bytes hashed at each end of the records file for the fingerprint (edits in the middle that keep
size and mtime are not caught; every normal write changes mtime)."""
_NEWLINE = ord("\n")
_ASCII_SPACE = np.zeros(256, dtype=bool)
_ASCII_SPACE[[9, 10, 11, 12, 13, 32]] = True  # exactly what bytes.isspace() accepts


@dataclass(frozen=True)
class Fingerprint:
    """What identifies one version of a records file."""

    size: int
    """File size in bytes."""
    mtime_ns: int
    """Modification time in nanoseconds."""
    edge_hash: int
    """Signed 64-bit BLAKE2b of the first and last ``HASH_SPAN`` bytes."""

    @classmethod
    def of(cls, path: Path) -> Fingerprint:
        st = os.stat(path)
        h = hashlib.blake2b(digest_size=8)
        with open(path, "rb") as fh:
            h.update(fh.read(HASH_SPAN))
            if st.st_size > HASH_SPAN:
                fh.seek(max(HASH_SPAN, st.st_size - HASH_SPAN))
                h.update(fh.read(HASH_SPAN))
        return cls(st.st_size, st.st_mtime_ns, int.from_bytes(h.digest(), "little", signed=True))

    def header(self, n_records: int) -> np.ndarray:
        return np.array([[INDEX_MAGIC, INDEX_VERSION, n_records], [self.size, self.mtime_ns, self.edge_hash]],
                        dtype=np.int64)


def default_index_path(jsonl_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where the index of ``jsonl_path`` is cached: beside it, or in ``cache_dir`` under a name
    that also hashes the absolute records path (two ``train.jsonl`` of different datasets)."""
    jsonl_path = Path(jsonl_path)
    if cache_dir is None:
        return jsonl_path.with_name(jsonl_path.name + INDEX_SUFFIX)
    tag = hashlib.blake2b(str(jsonl_path.resolve()).encode(), digest_size=6).hexdigest()
    return Path(cache_dir) / f"{jsonl_path.name}.{tag}{INDEX_SUFFIX}"


def _scan_lines(path: Path, size: int) -> np.ndarray:
    """The index table of ``path``: ``HEADER_ROWS`` zero rows (filled by the caller), then one row
    ``(start, end, line)`` per non-blank line (``end`` excludes the ``\\n``).

    Newlines are found by numpy on big chunks; Python only looks at lines whose first byte is
    whitespace (blank lines, or JSON indented with leading spaces), which are rare. The table is
    filled in place, so peak memory is about the chunk plus three int64 arrays of the line count.
    """
    newline_parts, start_parts, first_byte_parts = [], [], []
    buf = bytearray(min(CHUNK_BYTES, max(size, 1)))
    base, prev_ended_line = 0, True  # True: the next chunk starts a new line
    with open(path, "rb", buffering=0) as fh:
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            chunk = np.frombuffer(buf, dtype=np.uint8, count=n)
            nl = np.flatnonzero(chunk == _NEWLINE)
            local_starts = nl + 1
            local_starts = local_starts[local_starts < n]  # a start at n belongs to the next chunk
            if prev_ended_line:
                local_starts = np.concatenate([[0], local_starts])
            # copy the first bytes now: buf is overwritten by the next read
            first_byte_parts.append(chunk[local_starts].copy())
            start_parts.append(local_starts + base)
            newline_parts.append(nl + base)
            prev_ended_line = bool(chunk[n - 1] == _NEWLINE)
            base += n
    if base != size:
        raise CotrainError(f"{path}: read {base} bytes but the file has {size}; it changed while being indexed. "
                           "Wait until the file is fully written, then start again")
    starts = np.concatenate(start_parts or [np.zeros(0, np.int64)]).astype(np.int64, copy=False)
    del start_parts
    # line k ends at the k-th newline; a last line without newline ends at end of file
    newline_parts.append(np.array([size], dtype=np.int64))
    ends = np.concatenate(newline_parts)[: len(starts)].astype(np.int64, copy=False)
    del newline_parts
    first_is_space = _ASCII_SPACE[np.concatenate(first_byte_parts or [np.zeros(0, np.uint8)])]
    keep = ends > starts
    doubtful = np.flatnonzero(keep & first_is_space)
    keep &= ~first_is_space
    if len(doubtful):
        with open(path, "rb") as fh:
            fd = fh.fileno()
            for k in doubtful:
                keep[k] = not os.pread(fd, int(ends[k] - starts[k]), int(starts[k])).isspace()
    kept = slice(None) if keep.all() else np.flatnonzero(keep)  # a slice avoids copies in the usual case
    lines = np.arange(1, len(keep) + 1, dtype=np.int64)[kept]
    table = np.zeros((HEADER_ROWS + len(lines), 3), dtype=np.int64)
    table[HEADER_ROWS:, 0] = starts[kept]
    del starts
    table[HEADER_ROWS:, 1] = ends[kept]
    del ends
    table[HEADER_ROWS:, 2] = lines
    return table


def _write_atomic(table: np.ndarray, target: Path) -> None:
    """Write ``table`` as ``.npy`` to a unique temp file beside ``target``, then rename it over
    ``target``: a reader sees the old file or the complete new one, never a partial one."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, table, allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CotrainError(f"cannot write the record index {target} ({e.strerror or e}). Make the directory "
                           "writable, or pass cache_dir= a writable directory shared by all ranks") from None


def _load_matching(index_path: Path, fp: Fingerprint) -> np.ndarray | None:
    """The memory-mapped table of ``index_path`` if it exists and was built for ``fp``, else None
    (missing, stale, another format version, or not an index file at all)."""
    try:
        table = np.load(index_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if table.dtype != np.int64 or table.ndim != 2 or table.shape[1] != 3 or table.shape[0] < HEADER_ROWS:
        return None
    expected = fp.header(table.shape[0] - HEADER_ROWS)
    if not np.array_equal(np.asarray(table[:HEADER_ROWS]), expected):
        return None
    return table


class RecordIndex:
    """Random access to the validated records of one JSONL file through a memory-mapped offset table.

    Safe to share between threads (reads use ``os.pread``, which has no shared file position) and
    to pickle into dataloader workers (only paths travel; each process reopens the file and maps
    the index itself).
    """

    def __init__(self, jsonl_path: Path, index_path: Path, fingerprint: Fingerprint, table: np.ndarray,
                 *, built: bool):
        self.path = jsonl_path
        """The records file."""
        self.index_path = index_path
        """The cache file holding the offset table."""
        self.fingerprint = fingerprint
        """Fingerprint of the records file the table describes."""
        self.built = built
        """True when this call built the table (False: loaded from cache), for logs and tests."""
        self._table = table
        self._rows = table[HEADER_ROWS:]
        self._fd: int | None = None
        self._fd_pid: int | None = None
        self._lock = threading.Lock()

    @classmethod
    def build_or_load(cls, jsonl_path: str | Path, *, cache_dir: str | Path | None = None, rank: int = 0,
                      world_size: int = 1, timeout_s: float = 600.0) -> RecordIndex:
        """The index of ``jsonl_path``: loaded from its cache file when that matches the file's
        current fingerprint, otherwise built (by rank 0; other ranks wait up to ``timeout_s``)."""
        jsonl_path = Path(jsonl_path)
        if not jsonl_path.is_file():
            raise RecordError("records file not found. Check the dataset's 'records' path (run the converter "
                              "first if the file is generated)", path=str(jsonl_path))
        index_path = default_index_path(jsonl_path, cache_dir)
        fp = Fingerprint.of(jsonl_path)
        table = _load_matching(index_path, fp)
        if table is not None:
            return cls(jsonl_path, index_path, fp, table, built=False)
        if rank == 0 or world_size <= 1:
            return cls._build(jsonl_path, index_path, fp)
        return cls._wait(jsonl_path, index_path, fp, rank, timeout_s)

    @classmethod
    def _build(cls, jsonl_path: Path, index_path: Path, fp: Fingerprint) -> RecordIndex:
        table = _scan_lines(jsonl_path, fp.size)
        if Fingerprint.of(jsonl_path) != fp:
            raise CotrainError(f"{jsonl_path}: the file changed while being indexed. Wait until it is fully "
                               "written (write to a temp file and rename it into place), then start again")
        if not index_path.parent.is_dir():
            raise CotrainError(f"index cache directory {index_path.parent} does not exist. Create it or pass "
                               "cache_dir= an existing directory")
        table[:HEADER_ROWS] = fp.header(len(table) - HEADER_ROWS)
        _write_atomic(table, index_path)
        del table
        table = _load_matching(index_path, fp)
        if table is None:  # another writer replaced it with an index of a newer file version
            raise CotrainError(f"{index_path} was replaced while being written; {jsonl_path} is being changed. "
                               "Wait until the records file is final, then start again")
        return cls(jsonl_path, index_path, fp, table, built=True)

    @classmethod
    def _wait(cls, jsonl_path: Path, index_path: Path, fp: Fingerprint, rank: int,
              timeout_s: float) -> RecordIndex:
        deadline = time.monotonic() + timeout_s
        pause = 0.05
        while True:
            table = _load_matching(index_path, fp)
            if table is not None:
                return cls(jsonl_path, index_path, fp, table, built=False)
            if time.monotonic() >= deadline:
                raise CotrainError(
                    f"rank {rank} waited {timeout_s:g} s for rank 0 to write the index {index_path} of "
                    f"{jsonl_path}, and it did not appear. Check that rank 0 is alive and that the index "
                    "directory is shared by all ranks (pass cache_dir= a shared directory, or the local rank "
                    "as rank for a node-local one); for a huge file raise timeout_s")
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 1.0)

    def __len__(self) -> int:
        return len(self._rows)

    def _row(self, i: int) -> tuple[int, int, int]:
        n = len(self._rows)
        if not -n <= i < n:
            raise IndexError(f"record index {i} out of range for {n} records in {self.path}")
        start, end, line = self._rows[i]
        return int(start), int(end), int(line)

    def line_number(self, i: int) -> int:
        """1-based line of record ``i`` in the records file (blank lines counted)."""
        return self._row(i)[2]

    def _file(self) -> int:
        # A descriptor is per process: after fork or unpickling the first read opens a fresh one.
        pid = os.getpid()
        if self._fd is None or self._fd_pid != pid:
            with self._lock:
                if self._fd is None or self._fd_pid != pid:
                    self._fd, self._fd_pid = os.open(self.path, os.O_RDONLY), pid
        return self._fd

    def _read(self, start: int, end: int) -> bytes:
        data = os.pread(self._file(), end - start, start)
        if len(data) != end - start:
            raise CotrainError(f"{self.path} is shorter than its index {self.index_path} says; the file was "
                               "truncated after indexing. Rebuild by restarting (the index is refreshed on load)")
        return data[:-1] if data.endswith(b"\r") else data

    def raw(self, i: int) -> bytes:
        """The bytes of record ``i``'s line, without the line terminator."""
        start, end, _ = self._row(i)
        return self._read(start, end)

    def record(self, i: int) -> dict:
        """Record ``i`` parsed and checked by ``validate_record``; errors name the file and true line."""
        start, end, line = self._row(i)
        data = self._read(start, end)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RecordError(f"not valid UTF-8 (byte 0x{data[e.start]:02x} at byte column {e.start + 1}). "
                              "Re-encode the file as UTF-8 (e.g. iconv -f LATIN1 -t UTF-8)",
                              path=str(self.path), line=line) from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise RecordError(f"invalid JSON ({e.msg} at column {e.colno}). Write one JSON object per line",
                              path=str(self.path), line=line) from None
        return validate_record(obj, path=self.path, line=line)

    __getitem__ = record

    def close(self) -> None:
        """Close this process's descriptor (the mapping is released with the object)."""
        if self._fd is not None and self._fd_pid == os.getpid():
            os.close(self._fd)
        self._fd = self._fd_pid = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: os may already be gone
            pass

    def __getstate__(self) -> dict:
        # Never pickle the mapping (numpy would copy the whole table) or the descriptor.
        return {"path": self.path, "index_path": self.index_path, "fingerprint": self.fingerprint,
                "built": self.built}

    def __setstate__(self, state: dict) -> None:
        fp = state["fingerprint"]
        table = _load_matching(state["index_path"], fp)
        st = os.stat(state["path"])  # cheap check that the records file itself was not rewritten
        if table is None or (st.st_size, st.st_mtime_ns) != (fp.size, fp.mtime_ns):
            raise CotrainError(f"the index {state['index_path']} no longer matches the one this object was "
                               f"pickled with; {state['path']} changed during the run. Do not modify records "
                               "files while training; restart to rebuild the index")
        self.__init__(state["path"], state["index_path"], fp, table, built=state["built"])

    def __repr__(self) -> str:
        return f"RecordIndex({str(self.path)!r}, records={len(self)}, index={str(self.index_path)!r})"
