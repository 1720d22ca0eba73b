"""The evaluation harness: benchmark records -> requests -> backend -> cached scores -> metrics -> report.

Prompts are built by the training task builders (same templates, same box codec, same image
sizes: ``cotrain.inference.base.PixelLimits``), answered by any backend with
``generate(requests)``, scored per sample (``cotrain.eval.scoring``) and appended to a per-rank
cache file as soon as each chunk is done. A rerun reads every cache file of the benchmark and only
generates what is missing, so an interrupted evaluation continues where it stopped; a cache made
with a different model, backend, sampling or benchmark definition is refused (``--overwrite``).

Under torchrun each rank answers a disjoint share of the missing samples; rank 0 merges the
caches into ``results.jsonl`` and writes ``metrics.json`` and ``report.md``. Records whose images
are missing or corrupt are counted skips (by reason) in the metrics and the report.

Layout of ``out_dir``::

    metrics.json                 {benchmark: {metric: value, ..., "skipped": {reason: n}}}
    report.md                    a table per benchmark
    <bench>/results.jsonl        one line per sample: id, prompt, response, score, ...
    <bench>/cache-rank<r>.jsonl  in-progress cache (merged into results.jsonl at the end)
    <bench>/cache_key.json       what the cached answers depend on
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from cotrain.errors import BadRecordError, ConfigError
from cotrain.eval.registry import TASK_METRIC, Benchmark
from cotrain.eval.scoring import score_sample, summarise
from cotrain.eval.summary import psum_nsum, report_markdown
from cotrain.files import write_json_atomic, write_jsonl_atomic
from cotrain.inference.base import GenerationRequest, SamplingParams
from cotrain.resolution import PixelLimits, resized_wh_of
from cotrain.tasks.base import user_text

log = logging.getLogger(__name__)

CACHE_VERSION = 1


@dataclass
class EvalOptions:
    """How to run benchmarks (everything else comes from the benchmark and the backend)."""

    max_samples: int | None = None
    """At most this many records per benchmark (the first ones, in file order)."""
    max_new_tokens: int = 64
    """Default generation limit; a benchmark's ``max_new_tokens`` option wins."""
    chunk_size: int = 64
    """Requests per backend call between cache writes."""
    seed: int = 0
    """Template seed of the prompt builders."""
    overwrite: bool = False
    """Discard cached answers instead of continuing them."""
    progress: bool = True
    model_key: dict = field(default_factory=dict)
    """What identifies the model (path, adapter, backend); part of the cache key."""


@dataclass
class Prepared:
    """One benchmark, ready to run: its records, prompt builder and pixel limits."""

    bench: Benchmark
    records: list[dict]
    loaded: Any
    """The ``LoadedDataset`` (dataset options + class list) the builder phrases prompts from."""
    builder: Any
    limits: PixelLimits
    sampling: SamplingParams


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _barrier(world_size: int) -> None:
    # only when the caller runs sharded: rank 0 evaluating alone inside a torchrun job must not wait
    d = _dist()
    if world_size > 1 and d is not None:
        d.barrier()


def prepare(bench: Benchmark, backend, opts: EvalOptions) -> Prepared:
    """Load and validate the benchmark's records and build its prompt builder (no model call)."""
    from cotrain.config import DataConfig, DatasetConfig
    from cotrain.data.dataset import SampleBuilder, load_dataset, read_record

    if bench.metric == "triplet_retrieval":
        raise ConfigError(f"benchmark {bench.name!r} ranks RGB / IR images and captions by embeddings: evaluate a CLIP "
                          "checkpoint (model.kind: clip) on it, not a vision-language model")
    if bench.metric == "retrieval":
        if bench.task != "captioning":
            raise ConfigError(f"benchmark {bench.name!r}: retrieval ranks the captions of captioning records; "
                              f"task is {bench.task!r}")
        if not hasattr(backend, "loglikelihood"):
            raise ConfigError(f"benchmark {bench.name!r}: retrieval scores every image against every caption by "
                              f"likelihood, which the {backend.name} backend does not provide; use --backend hf")
    if not Path(bench.records).is_file():
        raise ConfigError(f"benchmark {bench.name!r}: records file {bench.records} does not exist"
                          + (" (make the demo data with: cotrain make-demo-data)" if "demo" in bench.source
                             or "make_demo_data" in bench.source else ""))
    o = bench.options
    base = backend.limits
    limits = PixelLimits(int(o.get("min_pixels", base.min_pixels)), int(o.get("max_pixels", base.max_pixels)),
                         backend.family.factor)
    # load_dataset refuses records whose task differs from a declared one (naming file and record)
    ds = DatasetConfig(name=bench.name, records=bench.records, image_root=bench.image_root,
                       task=None if bench.task == "mixed" else bench.task,
                       box_format=o.get("box_format", "quad"), prompt_style=o.get("prompt_style", "plain"),
                       classes=o.get("classes"), composite=o.get("composite"),
                       sensor_branch=sensor_branch_of(bench, backend))
    ld = load_dataset(ds)
    n = len(ld.records)
    for limit in (o.get("max_samples"), opts.max_samples):  # the benchmark's and the caller's: the smaller wins
        if limit is not None:
            if int(limit) < 1:
                raise ConfigError(f"benchmark {bench.name!r}: max_samples={limit} must be >= 1")
            n = min(n, int(limit))
    records = [read_record(ld, i) for i in range(n)]
    data_cfg = DataConfig(seed=opts.seed, min_pixels=limits.min_pixels, max_pixels=limits.max_pixels,
                          max_length=10**9)
    builder = SampleBuilder(None, backend.family, data_cfg)  # conversations only: the backend encodes
    sampling = SamplingParams(max_new_tokens=int(o.get("max_new_tokens", opts.max_new_tokens)), seed=opts.seed)
    return Prepared(bench, records, ld, builder, limits, sampling)


def sensor_branch_of(bench, backend):
    """The benchmark's ``sensor_branch`` option as a config, after checking that the model has its bands."""
    opt = bench.options.get("sensor_branch")
    if not opt:
        return None
    from cotrain.config import SensorBranchConfig, bind_dataclass
    from cotrain.model.sensor_branch import require_bands
    from cotrain.sensor_pixels import check_statistics

    sb = bind_dataclass(SensorBranchConfig, opt, f"benchmark {bench.name!r} options.sensor_branch")
    check_statistics(sb.bands, sb.stats, f"benchmark {bench.name!r}")
    if getattr(backend, "model", None) is None:
        raise ConfigError(f"benchmark {bench.name!r}: the sensor branch needs the model's widened patch embedding; "
                          f"the {backend.name} backend cannot feed it, use --backend hf")
    require_bands(backend.model, sb.bands, f"benchmark {bench.name!r}")
    return sb


def weights_fingerprint(path: str | os.PathLike | None) -> dict | None:
    """Names, sizes and mtimes of a model or adapter directory's weight files: a retrained model in the same
    directory must not be served answers cached for the old one."""
    if not path:
        return None
    d = Path(path)
    files = sorted(f for f in d.iterdir() if f.suffix in (".safetensors", ".bin", ".pt")) if d.is_dir() else []
    return {"path": str(d.resolve()), "files": [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]}


def cache_key(p: Prepared, opts: EvalOptions) -> dict:
    """Everything a cached answer depends on; a mismatch means the cache is for another evaluation."""
    st = os.stat(p.bench.records)
    bench = {k: v for k, v in asdict(p.bench).items() if k not in ("description", "source")}  # prose, not data
    return {"version": CACHE_VERSION, "model": opts.model_key, "benchmark": bench,
            "records": {"size": st.st_size, "mtime_ns": st.st_mtime_ns}, "limits": asdict(p.limits),
            "sampling": asdict(p.sampling), "seed": opts.seed}


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_rows(path: Path) -> list[dict]:
    """Rows of a cache or results file; a half-written last line (killed run) is ignored."""
    rows = []
    if not path.is_file():
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s: ignoring a half-written line (the run was interrupted)", path)
    return rows


def _cached_rows(bdir: Path, records: list[dict]) -> dict[int, dict]:
    """Cached answers of the records being evaluated now (rows beyond a smaller --max-samples, or whose
    id no longer matches the record at that index, are left out; skips are retried)."""
    rows: dict[int, dict] = {}
    for path in [bdir / "results.jsonl", *sorted(bdir.glob("cache-rank*.jsonl"))]:
        for r in read_rows(path):
            i = int(r.get("index", -1))
            if 0 <= i < len(records) and r.get("id") == str(records[i]["id"]) and not r.get("error"):
                rows[i] = r
            elif 0 <= i < len(records) and r.get("error"):
                rows.setdefault(i, r)  # kept unless a later answer exists; retried below
    return rows


def _check_cache(bdir: Path, key: dict, overwrite: bool, rank: int, world_size: int) -> None:
    key_file = bdir / "cache_key.json"
    if rank == 0:
        bdir.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for f in [bdir / "results.jsonl", *bdir.glob("cache-rank*.jsonl")]:
                f.unlink(missing_ok=True)
        elif key_file.is_file():
            old = json.loads(key_file.read_text(encoding="utf-8"))
            if _digest(old) != _digest(key):
                diff = sorted(k for k in key if old.get(k) != key[k])
                raise ConfigError(f"{bdir} holds answers of a different evaluation (differs in: {', '.join(diff)}). "
                                  "Pass --overwrite to discard them, or choose another --out directory.")
        key_file.write_text(json.dumps(key, indent=2, sort_keys=True, default=str), encoding="utf-8")
    _barrier(world_size)
    if rank != 0 and _digest(json.loads(key_file.read_text(encoding="utf-8"))) != _digest(key):
        raise ConfigError(f"rank {rank}: its evaluation differs from rank 0's ({bdir}); every rank must get the same "
                          "arguments")


def build_request(p: Prepared, index: int, record: dict) -> tuple[GenerationRequest, Any]:
    """(request, conversation) of record ``index``: the training prompt, answered by any backend."""
    conv = p.builder.conversation(record, p.loaded, 0, index)
    req = GenerationRequest.from_conversation(conv, p.sampling)
    req.id = str(index)
    return req, conv


def _error_row(index: int, record: dict, reason: str) -> dict:
    """A sample that got no answer: counted as a skip by reason, retried by a rerun."""
    return {"index": index, "id": str(record["id"]), "task": record["task"], "error": reason, "response": ""}


def _row(p: Prepared, index: int, record: dict, req: GenerationRequest, resp, codec) -> dict:
    row = {"index": index, "id": str(record["id"]), "task": record["task"],
           "prompt": user_text(req), "response": resp.text, "finish_reason": resp.finish_reason,
           "prompt_tokens": resp.prompt_tokens, "generated_tokens": resp.generated_tokens,
           "images": [{"width": int(i["width"]), "height": int(i["height"]), "resized_wh": list(resized_wh_of(i))}
                      for i in req.images]}
    if resp.error:
        return {**row, **_error_row(index, record, resp.error)}
    metric = p.bench.metric if p.bench.metric != "mixed" else TASK_METRIC[record["task"]]
    row["score"] = score_sample(metric, record, resp.text, images=req.images, codec=codec,
                                options=p.bench.options)
    return row


def retrieval_texts(p: Prepared) -> tuple[list[str], list[int]]:
    """The caption pool of a retrieval benchmark and the record index each caption belongs to
    (the first ``captions_per_image`` captions of every record, default 1)."""
    k = int(p.bench.options.get("captions_per_image", 1))
    texts, owner = [], []
    for i, rec in enumerate(p.records):
        for c in rec["captions"][:k]:
            texts.append(c)
            owner.append(i)
    return texts, owner


def _retrieval_row(p: Prepared, index: int, req: GenerationRequest, backend) -> dict:
    """One image's likelihood score for every caption of the pool (an image that cannot be read: a skip)."""
    from cotrain.inference.base import load_request_images

    texts, _ = retrieval_texts(p)
    rec = p.records[index]
    try:
        load_request_images(req)  # the reason of a skip (missing / corrupt / ...) before scoring
    except BadRecordError as e:
        return _error_row(index, rec, e.reason)
    scores = backend.loglikelihood([req] * len(texts), texts)
    if any(s is None for s in scores):
        return _error_row(index, rec, "image_unreadable")
    return {"index": index, "id": str(rec["id"]), "task": rec["task"], "response": "", "scores": scores}


def run_benchmark(bench: Benchmark, backend, out_dir: str | Path, opts: EvalOptions | None = None, *,
                  rank: int = 0, world_size: int = 1) -> dict | None:
    """Evaluate one benchmark; returns its metrics on rank 0 (None on other ranks)."""
    opts = opts or EvalOptions()
    p = prepare(bench, backend, opts)
    bdir = Path(out_dir) / bench.name
    _check_cache(bdir, cache_key(p, opts), opts.overwrite, rank, world_size)
    done = {i for i, r in _cached_rows(bdir, p.records).items() if not r.get("error")}
    _barrier(world_size)  # every rank has read the caches before any rank appends to its own
    todo = [i for i in range(len(p.records)) if i not in done][rank::world_size]
    if done:
        log.info("%s: %d/%d samples cached, %d to go on this rank", bench.name, len(done), len(p.records), len(todo))
    codec = p.builder.codec
    skips: Counter = Counter()
    cache = bdir / f"cache-rank{rank}.jsonl"
    bar = tqdm(total=len(todo), desc=f"eval {bench.name}", disable=not opts.progress or rank != 0)
    t0 = time.perf_counter()
    if cache.is_file() and cache.stat().st_size:
        with open(cache, "rb") as f:
            f.seek(-1, os.SEEK_END)
            cut = f.read(1) != b"\n"
        if cut:  # a killed run left half a line: end it, so the next row starts on a line of its own
            with open(cache, "a", encoding="utf-8") as f:
                f.write("\n")
    with open(cache, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), opts.chunk_size):
            chunk, reqs = [], []
            for i in todo[start:start + opts.chunk_size]:
                if p.records[i]["task"] not in TASK_METRIC:  # e.g. a conversation record in a mixed set
                    f.write(json.dumps(_error_row(i, p.records[i], "no_metric")) + "\n")
                    continue
                try:
                    req, _ = build_request(p, i, p.records[i])
                except BadRecordError as e:  # e.g. an image too large for the pixel limits
                    f.write(json.dumps(_error_row(i, p.records[i], e.reason)) + "\n")
                    continue
                chunk.append(i)
                reqs.append(req)
            if p.bench.metric == "retrieval":
                for i, req in zip(chunk, reqs):
                    f.write(json.dumps(_retrieval_row(p, i, req, backend)) + "\n")
            else:
                responses = backend.generate(reqs) if reqs else []
                for i, req, resp in zip(chunk, reqs, responses):
                    f.write(json.dumps(_row(p, i, p.records[i], req, resp, codec), default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
            bar.update(len(todo[start:start + opts.chunk_size]))
    bar.close()
    elapsed = time.perf_counter() - t0
    _barrier(world_size)
    if rank != 0:
        return None
    rows = sorted(_cached_rows(bdir, p.records).values(), key=lambda r: r["index"])
    missing = len(p.records) - len(rows)
    if missing > 0:
        raise RuntimeError(f"{bench.name}: {missing} samples have no answer after every rank finished; rerun to "
                           "continue")
    write_jsonl_atomic(bdir / "results.jsonl", rows, default=str)
    for c in bdir.glob("cache-rank*.jsonl"):
        c.unlink()
    for r in rows:
        if r.get("error"):
            skips[r["error"]] += 1
    records = {i: rec for i, rec in enumerate(p.records)}
    if bench.metric == "retrieval":
        metrics = _retrieval_summary(p, rows)
    else:
        metrics = summarise(bench.metric, rows, records, codec=codec, options=bench.options)
    metrics.update({"benchmark": bench.name, "task": bench.task, "metric": bench.metric,
                    "records": len(p.records), "skipped": dict(skips),
                    "pixels": [p.limits.min_pixels, p.limits.max_pixels],
                    "max_new_tokens": p.sampling.max_new_tokens})
    if bench.options.get("aggregate"):
        metrics["aggregate"] = bench.options["aggregate"]
    if todo:
        metrics["samples_per_s_this_run"] = len(todo) * world_size / max(elapsed, 1e-9)
    if skips:
        log.warning("%s: %d of %d records skipped: %s", bench.name, sum(skips.values()), len(p.records), dict(skips))
    return metrics


def predict(bench: Benchmark, backend, out_path: str | Path, opts: EvalOptions | None = None) -> int:
    """The harness without scoring: one response line per record of ``bench``, in record order.

    Each line: ``{"id", "task", "prompt", "response", "resized_wh": [w, h], "orig_wh": [w, h],
    "box_convention"}`` (sizes of the first image; "abs" or "norm1000"): what ``cotrain eval-det``
    needs to map boxes back to original pixels. Prompts are built as in training and as in
    ``run_benchmark``. Records that cannot be asked (bad image, ...) or get no answer are counted,
    logged and left out. Returns the number of lines; the file is replaced only once complete.
    """
    opts = opts or EvalOptions()
    p = prepare(bench, backend, opts)
    skips: Counter = Counter()
    asked, reqs = [], []
    for i, rec in enumerate(p.records):
        try:
            req, conv = build_request(p, i, rec)
        except BadRecordError as e:
            skips[e.reason] += 1
            continue
        asked.append((rec, conv))
        reqs.append(req)
    responses = backend.generate(reqs, progress=opts.progress) if reqs else []
    lines = []
    for (rec, conv), resp in zip(asked, responses):
        if resp.error:
            skips[resp.error] += 1
            continue
        img = conv.images[0]
        lines.append({"id": str(rec["id"]), "task": rec["task"], "prompt": user_text(conv), "response": resp.text,
                      "resized_wh": list(resized_wh_of(img)), "orig_wh": [img["width"], img["height"]],
                      "box_convention": backend.family.box_convention})
    write_jsonl_atomic(out_path, lines)
    if skips:
        log.warning("%s: skipped records: %s", bench.name, dict(skips))
    return len(lines)


def predict_records(model_dir: str, records: str, image_root: str, out_path: str, *, box_format: str = "quad",
                    prompt_style: str = "plain", max_samples: int | None = None, batch_size: int = 16,
                    max_new_tokens: int = 256, min_pixels: int | None = None, max_pixels: int | None = None,
                    seed: int = 0) -> int:
    """``predict`` for a saved model and a records file (``cotrain predict``); any record tasks.

    Pixel budget: the family's minimum and 256 visual tokens unless given.
    """
    from cotrain.inference.base import override_limits
    from cotrain.inference.hf import HFBackend

    backend = HFBackend.from_checkpoint(model_dir, batch_size=batch_size)
    family = backend.family
    override_limits(backend, min_pixels or family.default_min_pixels, max_pixels or 256 * family.factor ** 2)
    bench = Benchmark(name=Path(records).stem, records=records, image_root=image_root, task="mixed",
                      options={"box_format": box_format, "prompt_style": prompt_style})
    return predict(bench, backend, out_path, EvalOptions(max_samples=max_samples, max_new_tokens=max_new_tokens,
                                                         seed=seed))


def _retrieval_summary(p: Prepared, rows: list[dict]) -> dict:
    """R@1/5/10 both ways and mean recall over the images that could be read (and their captions)."""
    import numpy as np

    from cotrain.metrics.retrieval import chance_recall, retrieval_summary

    _, owner = retrieval_texts(p)
    ok = [r for r in rows if not r.get("error")]
    keep = {r["index"] for r in ok}
    cols = [t for t, i in enumerate(owner) if i in keep]
    if not ok:
        return {"n": 0}
    order = {r["index"]: k for k, r in enumerate(ok)}
    sim = np.array([[r["scores"][t] for t in cols] for r in ok])
    out = retrieval_summary(sim, [order[owner[t]] for t in cols])
    out.update({"n": len(ok), "texts": len(cols), "score": "mean log-probability of the caption given the image"})
    per_image = round(len(cols) / len(ok))
    txt, img = chance_recall(len(cols), [per_image] * len(ok)), chance_recall(len(ok), [1] * len(cols))
    chance = list(txt.values()) + list(img.values())
    out["chance_mean_recall"] = 100.0 * sum(chance) / 6
    return out


def evaluate(benchmarks: list[Benchmark], backend, out_dir: str | Path, opts: EvalOptions | None = None, *,
             rank: int = 0, world_size: int = 1, on_metrics: Callable[[str, dict], None] | None = None) -> dict:
    """Run every benchmark; on rank 0 write ``metrics.json`` and ``report.md`` and return the metrics."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for bench in benchmarks:
        m = run_benchmark(bench, backend, out, opts, rank=rank, world_size=world_size)
        if m is not None:
            results[bench.name] = m
            if on_metrics:
                on_metrics(bench.name, m)
    if rank == 0:
        write_json_atomic(out / "metrics.json", results)
        report = report_markdown(results, (opts or EvalOptions()).model_key)
        totals = psum_nsum(results)
        if totals["psum_sets"] or totals["nsum_sets"]:
            report += (f"\npsum {totals['psum']:.2f} over {totals['psum_sets']} sets (accuracy and grounding Acc@0.5, in "
                       f"percent); nsum {totals['nsum']:.3f} over {totals['nsum_sets']} counting sets (MAE)\n")
        (out / "report.md").write_text(report, encoding="utf-8")
    return results
