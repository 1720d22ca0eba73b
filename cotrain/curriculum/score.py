"""``score_difficulty``: both lessons on a set of IR records, written as the curriculum's score file.

Records: ``triplet`` records (the IR image is ``images[1]``, the visible twin ``images[0]``) or
single-image IR records (``captioning`` with an ``ir`` image; lesson 1 then needs visible references
from ``visible_records``). A record's IR image is paired with each of its texts (``pair_texts``:
``all``, the default, is its ``ir_captions`` then its ``captions``; ``ir`` its ``ir_captions`` (else
``captions``); ``first`` the first of those), and the record's loss l_i is the mean of its pairs'
losses: one caption is a noisy sample of how well an image and its description align.

* Lesson 1 (``cotrain.curriculum.transfer``): image features of every IR image and of the visible
  references from a frozen CLIP image tower (``encoder``: a local CLIP checkpoint); the IR references
  are the scored IR images themselves. At most ``max_references`` of each reference set are used
  (a seeded subset).
* Lesson 2 (``cotrain.curriculum.alignment``): per-pair losses under ``before`` and ``after`` (two CLIP
  checkpoints: a warm-up run's start and end), alpha and the weights.

Output: JSON lines ``{"id", "transfer", "alignment", "weight"}`` (only the lessons asked for), and a
summary (MMD^2, bandwidth, alpha share > 0, weight mean). Records whose images cannot be read are
counted skips, and absent from the file (a curriculum on them then names them as missing).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from cotrain.errors import ConfigError

log = logging.getLogger("cotrain")


def _entry_of(rec: dict, modality: str) -> dict:
    """The record's image of ``modality``; a record without one is an error naming it."""
    mods = [img["modality"] for img in rec["images"]]
    if modality not in mods:
        raise ConfigError(f"record {rec['id']!r} has no {modality} image (modalities {mods}); lesson scores need "
                          "IR records or triplets, and visible references with an rgb image")
    return rec["images"][mods.index(modality)]


TEXTS = ("all", "ir", "first")


def _check_texts(texts: str) -> None:
    if texts not in TEXTS:
        raise ConfigError(f"texts={texts!r}; use one of {', '.join(TEXTS)}")


def pair_texts(rec: dict, texts: str = "all") -> list[str]:
    """The texts lesson 2 pairs with the record's IR image (module docstring)."""
    _check_texts(texts)
    ir, orig = list(rec.get("ir_captions") or []), list(rec.get("captions") or [])
    got = {"all": ir + orig, "ir": ir or orig, "first": (ir or orig)[:1]}[texts]
    if not got:
        raise ConfigError(f"record {rec['id']!r} has no caption to pair its IR image with")
    return got


def image_features(model, processor, records: list[dict], image_root: str | Path, which: str, *,
                   batch_size: int = 32, progress: bool = True) -> tuple[np.ndarray, list[int], Counter]:
    """(L2-normalised features, indices of the records read, skips) of each record's ``which`` (ir / rgb) image."""
    from cotrain.contrastive.evaluate import embed_record_images

    feats, kept, skipped = embed_record_images(model, processor, records, image_root,
                                               lambda r: [_entry_of(r, which)], batch_size=batch_size,
                                               progress=progress, desc=f"{which} features")
    return feats[:, 0], kept, skipped


@torch.no_grad()
def clip_pair_losses(model, processor, images: np.ndarray, texts: list[list[str]], batch: int) -> np.ndarray:
    """Per record, the mean pair loss of its IR image features with each of its texts under one model
    (``alignment.record_pair_losses``)."""
    from cotrain.contrastive.evaluate import embed_texts_batched
    from cotrain.contrastive.loss import logit_scale_value
    from cotrain.curriculum.alignment import record_pair_losses

    emb = embed_texts_batched(model, processor, [t for ts in texts for t in ts])
    scale = float(logit_scale_value(model.logit_scale.detach()))
    return record_pair_losses(images, emb, [len(ts) for ts in texts], scale, batch)


def _subset(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    return x if len(x) <= n else x[np.random.default_rng(seed).choice(len(x), n, replace=False)]


def score_difficulty(records: list[dict], image_root: str | Path, *, encoder: str | Path | None = None,
                     before: str | Path | None = None, after: str | Path | None = None,
                     visible_records: list[dict] | None = None, visible_root: str | Path | None = None,
                     bandwidth: float | None = None, bandwidth_scale: float = 1.0, max_references: int = 20000,
                     pair_batch: int = 256, texts: str = "all", seed: int = 0,
                     progress: bool = True) -> tuple[list[dict], dict]:
    """(score rows keyed by record id, summary) of both lessons, or of the one whose inputs are given."""
    from cotrain.contrastive.model import load_clip
    from cotrain.curriculum.alignment import loss_weights, variation_rate
    from cotrain.curriculum.transfer import transfer_scores

    if encoder is None and before is None:
        raise ConfigError("give encoder= (lesson 1) and/or before= and after= (lesson 2)")
    if (before is None) != (after is None):
        raise ConfigError("lesson 2 needs both CLIP checkpoints: before= (the warm-up's start) and after= (its end)")
    _check_texts(texts)
    ids = [str(r["id"]) for r in records]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"record ids repeat ({len(dup)}, e.g. {dup[:3]}); scores are keyed by id")
    columns: dict[str, dict[int, float]] = {}
    summary: dict = {"records": len(records), "skipped": {}}
    ir_features: dict[str, tuple] = {}  # checkpoint -> (features, kept, skips): the encoder is often `after`

    def ir_of(ckpt, model, processor):
        key = str(Path(ckpt).resolve())
        if key not in ir_features:
            ir_features[key] = image_features(model, processor, records, image_root, "ir", progress=progress)
        return ir_features[key]

    if encoder is not None:
        model, processor = load_clip(encoder)
        model.eval()
        ir, kept, skipped = ir_of(encoder, model, processor)
        vis_recs = visible_records if visible_records is not None else records
        vis, _, vskip = image_features(model, processor, vis_recs, visible_root or image_root, "rgb", progress=progress)
        summary["skipped"] = dict(skipped + vskip)
        got = transfer_scores(ir, _subset(ir, max_references, seed), _subset(vis, max_references, seed + 1),
                              bandwidth=bandwidth, bandwidth_scale=bandwidth_scale, seed=seed)
        columns["transfer"] = dict(zip(kept, got.scores.tolist()))
        summary.update(mmd2=got.mmd2, bandwidth=got.bandwidth)
    if before is not None:
        losses = []
        for ckpt in (before, after):
            model, processor = load_clip(ckpt)
            model.eval()
            feats, kept2, skipped = ir_of(ckpt, model, processor)
            losses.append(clip_pair_losses(model, processor, feats, [pair_texts(records[i], texts) for i in kept2],
                                           pair_batch))
        summary["skipped"] = dict(Counter(summary["skipped"]) | skipped)
        alpha = variation_rate(losses[0], losses[1])
        weights = loss_weights(alpha)
        columns["alignment"] = dict(zip(kept2, alpha.tolist()))
        columns["weight"] = dict(zip(kept2, weights.tolist()))
        summary.update(alpha_positive_share=float((alpha > 0).mean()), weight_mean=float(weights.mean()),
                       loss_before=float(losses[0].mean()), loss_after=float(losses[1].mean()))
    scored = sorted(set.intersection(*(set(c) for c in columns.values())))
    rows = [{"id": ids[i], **{k: c[i] for k, c in columns.items()}} for i in scored]
    summary["scored"] = len(rows)
    return rows, summary


def run_warmup(recipe: str | Path, overrides: list[str], out_dir: str | Path) -> tuple[Path, Path]:
    """(before, after) CLIP checkpoints of a warm-up run of a ``model.kind: clip`` recipe.

    The recipe's starting model is saved first (``out_dir/before``: the checkpoint of ``model.path``, or the
    tiny random init), then the run trains from exactly that checkpoint into ``out_dir/warmup``.
    """
    from cotrain.config import load_config
    from cotrain.contrastive.model import build_clip
    from cotrain.contrastive.recipe import run, save_final_clip

    out = Path(out_dir)
    cfg = load_config(recipe, [*overrides, f"train.output_dir={out / 'warmup'}"])
    if cfg.model.kind != "clip":
        raise ConfigError(f"{recipe}: the warm-up is a contrastive run; set model.kind: clip")
    torch.manual_seed(cfg.train.seed)
    model, processor = build_clip(cfg)
    before = save_final_clip(model, processor, out / "init")
    cfg.model.path = str(before)
    after = Path(run(cfg)["summary"]["final_model"])
    return before, after
