"""Tests of cotrain.data.index: offsets against a per-line Python split of the bytes, cache reuse and
rebuild, error locations, rank waiting, pickling and concurrent reads."""

import json
import multiprocessing
import os
import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import cotrain.data.index as index_mod
from cotrain.data.index import INDEX_SUFFIX, RecordIndex, default_index_path
from cotrain.errors import CotrainError, RecordError


def _rec(rid: str, label: str = "forest") -> dict:
    return {"id": rid, "task": "classification", "label": label,
            "images": [{"path": f"{rid}.png", "modality": "rgb", "width": 64, "height": 48}]}


def _line(rid: str, label: str = "forest") -> bytes:
    return json.dumps(_rec(rid, label), ensure_ascii=False).encode()


def _reference_lines(data: bytes) -> list[tuple[int, bytes]]:
    """(1-based line number, content without terminator) of non-blank lines, by plain bytes.split."""
    out = []
    for k, text in enumerate(data.split(b"\n"), start=1):
        if text.strip():
            out.append((k, text[:-1] if text.endswith(b"\r") else text))
    return out


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_offsets_unicode_crlf_blank_and_unterminated_last_line(tmp_path):
    data = (_line("a", "Wald über Fluss") + b"\n"     # line 1: non-ASCII UTF-8
            + b"\n"                                       # line 2: empty
            + _line("b") + b"\r\n"                        # line 3: CRLF
            + b"   \t\r\n"                                # line 4: whitespace only
            + b"  " + _line("c", "水田") + b"\n"          # line 5: leading spaces, CJK
            + b"\r\n"                                     # line 6: blank CRLF
            + _line("d"))                                 # line 7: no final newline
    p = _write(tmp_path / "r.jsonl", data)
    idx = RecordIndex.build_or_load(p)
    assert len(idx) == 4
    assert [idx.line_number(i) for i in range(4)] == [1, 3, 5, 7]
    assert [idx.raw(i) for i in range(4)] == [t for _, t in _reference_lines(data)]
    assert idx.record(0)["label"] == "Wald über Fluss"
    assert idx.record(2) == _rec("c", "水田")
    assert idx[3] == _rec("d") and idx[-1] == _rec("d")
    with pytest.raises(IndexError):
        idx.record(4)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
def test_offsets_match_reference_across_chunk_boundaries(tmp_path, monkeypatch, chunk):
    rng = np.random.default_rng([7, chunk])
    pieces = []
    for k in range(300):
        kind = rng.integers(0, 6)
        pieces.append({0: b"", 1: b"  ", 2: b"\r", 3: b" " + _line(f"r{k}")}.get(kind, _line(f"r{k}", "é" * kind)))
        pieces.append(b"\r\n" if rng.random() < 0.3 else b"\n")
    data = b"".join(pieces) + (_line("last") if chunk % 2 else b"")
    p = _write(tmp_path / "r.jsonl", data)
    monkeypatch.setattr(index_mod, "CHUNK_BYTES", chunk)
    idx = RecordIndex.build_or_load(p)
    ref = _reference_lines(data)
    assert [(idx.line_number(i), idx.raw(i)) for i in range(len(idx))] == ref
    assert [idx.record(i)["id"] for i in range(len(idx))] == [json.loads(t)["id"] for _, t in ref]


def test_empty_and_blank_only_files(tmp_path):
    assert len(RecordIndex.build_or_load(_write(tmp_path / "e.jsonl", b""))) == 0
    assert len(RecordIndex.build_or_load(_write(tmp_path / "b.jsonl", b"\n \n\r\n\t"))) == 0


def test_cache_is_reused_without_rebuild(tmp_path):
    p = _write(tmp_path / "r.jsonl", b"\n".join(_line(f"r{k}") for k in range(50)) + b"\n")
    first = RecordIndex.build_or_load(p)
    cache = tmp_path / ("r.jsonl" + INDEX_SUFFIX)
    assert first.built and first.index_path == cache and cache.is_file()
    stamp = cache.stat().st_mtime_ns, cache.stat().st_ino
    second = RecordIndex.build_or_load(p)
    assert not second.built
    assert (cache.stat().st_mtime_ns, cache.stat().st_ino) == stamp
    assert isinstance(second._table, np.memmap)
    assert second.record(49) == _rec("r49")


def test_changed_file_rebuilds(tmp_path):
    p = _write(tmp_path / "r.jsonl", _line("a") + b"\n" + _line("b") + b"\n")
    assert len(RecordIndex.build_or_load(p)) == 2
    with open(p, "ab") as fh:
        fh.write(_line("c") + b"\n")
    grown = RecordIndex.build_or_load(p)
    assert grown.built and len(grown) == 3 and grown.record(2)["id"] == "c"
    # same size, same mtime, different bytes: only the edge hash can tell
    st = p.stat()
    p.write_bytes(p.read_bytes().replace(b'"c"', b'"z"'))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert p.stat().st_size == st.st_size and p.stat().st_mtime_ns == st.st_mtime_ns
    swapped = RecordIndex.build_or_load(p)
    assert swapped.built and swapped.record(2)["id"] == "z"


def test_edit_in_the_tail_rebuilds(tmp_path, monkeypatch):
    monkeypatch.setattr(index_mod, "HASH_SPAN", 16)  # head and tail spans far apart in a small file
    p = _write(tmp_path / "r.jsonl", b"\n".join(_line(f"r{k}") for k in range(10)))
    assert RecordIndex.build_or_load(p).built
    st = p.stat()
    data = p.read_bytes()
    assert data.endswith(b'"height": 48}]}')
    p.write_bytes(data[:-5] + b'47}]}')  # within the last 16 bytes, outside the first 16
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = RecordIndex.build_or_load(p)
    assert again.built and again.record(9)["images"][0]["height"] == 47


def test_garbage_cache_file_is_rebuilt(tmp_path):
    p = _write(tmp_path / "r.jsonl", _line("a") + b"\n")
    (tmp_path / ("r.jsonl" + INDEX_SUFFIX)).write_bytes(b"not an index")
    idx = RecordIndex.build_or_load(p)
    assert idx.built and idx.record(0)["id"] == "a"


def test_cache_dir(tmp_path):
    data_dir, cache_dir = tmp_path / "data", tmp_path / "cache"
    data_dir.mkdir(), cache_dir.mkdir()
    p = _write(data_dir / "r.jsonl", _line("a") + b"\n")
    idx = RecordIndex.build_or_load(p, cache_dir=cache_dir)
    assert idx.index_path.parent == cache_dir and idx.index_path == default_index_path(p, cache_dir)
    assert not list(data_dir.glob("*" + INDEX_SUFFIX))
    assert not RecordIndex.build_or_load(p, cache_dir=cache_dir).built
    with pytest.raises(CotrainError, match="does not exist"):
        RecordIndex.build_or_load(p, cache_dir=tmp_path / "missing")


def test_missing_records_file(tmp_path):
    with pytest.raises(RecordError, match="records file not found"):
        RecordIndex.build_or_load(tmp_path / "nope.jsonl")


def test_errors_name_the_true_line(tmp_path):
    bad = _rec("bad")
    del bad["label"]
    data = (_line("a") + b"\n\n  \n" + json.dumps(bad).encode() + b"\n"   # bad record on line 4
            + b'{"id": "x", "task": \n'                                     # invalid JSON on line 5
            + b'{"id": "caf\xe9", "task": "vqa"}\n')                       # Latin-1 byte on line 6
    p = _write(tmp_path / "r.jsonl", data)
    idx = RecordIndex.build_or_load(p)
    assert len(idx) == 4
    with pytest.raises(RecordError) as e:
        idx.record(1)
    assert e.value.line == 4 and e.value.field == "label" and e.value.record_id == "bad"
    assert f"{p}:4" in str(e.value)
    with pytest.raises(RecordError, match="invalid JSON") as e:
        idx.record(2)
    assert e.value.line == 5
    with pytest.raises(RecordError, match="not valid UTF-8.*0xe9.*Re-encode") as e:
        idx.record(3)
    assert e.value.line == 6 and f"{p}:6" in str(e.value)
    assert idx.raw(3) == b'{"id": "caf\xe9", "task": "vqa"}'


def test_rank_waits_for_rank_zero(tmp_path):
    p = _write(tmp_path / "r.jsonl", b"\n".join(_line(f"r{k}") for k in range(20)))
    result = {}

    def rank1():
        try:
            result["idx"] = RecordIndex.build_or_load(p, rank=1, world_size=2, timeout_s=20)
        except Exception as e:  # reported below
            result["err"] = e

    t = threading.Thread(target=rank1)
    t.start()
    time.sleep(0.3)
    assert t.is_alive() and not default_index_path(p).exists()  # rank 1 is waiting, not building
    built = RecordIndex.build_or_load(p, rank=0, world_size=2)
    t.join(20)
    assert "err" not in result, result.get("err")
    assert built.built and not result["idx"].built
    assert result["idx"].record(19) == _rec("r19")


def test_rank_wait_times_out_on_stale_index(tmp_path):
    p = _write(tmp_path / "r.jsonl", _line("a") + b"\n")
    RecordIndex.build_or_load(p)
    with open(p, "ab") as fh:
        fh.write(_line("b") + b"\n")
    start = time.monotonic()
    with pytest.raises(CotrainError, match=r"rank 1 waited 0.3 s .*r\.jsonl\.cotrain-index\.npy.*cache_dir"):
        RecordIndex.build_or_load(p, rank=1, world_size=2, timeout_s=0.3)
    assert time.monotonic() - start < 3


def test_pickle_carries_paths_not_tables(tmp_path):
    p = _write(tmp_path / "r.jsonl", b"\n".join(_line(f"r{k}") for k in range(2000)))
    idx = RecordIndex.build_or_load(p)
    idx.record(0)  # open the descriptor before pickling
    blob = pickle.dumps(idx)
    assert len(blob) < 2000  # the table is 48 kB; only paths and the fingerprint travel
    clone = pickle.loads(blob)
    assert len(clone) == 2000 and clone.record(1234) == _rec("r1234")
    with open(p, "ab") as fh:
        fh.write(b"\n" + _line("new"))
    with pytest.raises(CotrainError, match="changed during the run"):
        pickle.loads(blob)


def _read_ids(args):
    idx, positions = args
    ids = [idx.record(i)["id"] for i in positions]
    assert idx._fd_pid == os.getpid()  # the child opened its own descriptor
    return os.getpid(), ids


def test_forked_workers_reopen_the_file(tmp_path):
    p = _write(tmp_path / "r.jsonl", b"\n".join(_line(f"r{k}") for k in range(100)))
    idx = RecordIndex.build_or_load(p)
    idx.record(0)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        out = pool.map(_read_ids, [(idx, range(k, 100, 4)) for k in range(4)])
    assert all(pid != os.getpid() for pid, _ in out)
    assert [ids for _, ids in out] == [[f"r{i}" for i in range(k, 100, 4)] for k in range(4)]


def test_concurrent_thread_reads(tmp_path):
    p = _write(tmp_path / "r.jsonl", b"\n".join(_line(f"r{k}", "x" * (k % 17 + 1)) for k in range(500)))
    idx = RecordIndex.build_or_load(p)
    order = np.random.default_rng(3).permutation(500)
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda i: idx.record(int(i)), order))
    assert got == [_rec(f"r{i}", "x" * (i % 17 + 1)) for i in order]
