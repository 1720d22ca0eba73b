"""The CLIP model and its processor: a local transformers checkpoint, or a tiny random one.

``ClipProcessor`` turns PIL images into pixel tensors (transformers' CLIP image processor: resize
the short side, centre crop, normalise) and captions into padded token ids that end with the
tokenizer's end token (the position CLIP's text tower pools). The tiny model uses the project's
byte-level tokenizer (``cotrain.model.processor.build_byte_tokenizer``), so nothing is downloaded;
a real checkpoint brings its own tokenizer and ``preprocessor_config.json``, and a directory
without them is a ``ModelLoadError`` naming the missing files.

``embed_images`` / ``embed_texts`` give L2-normalised embeddings (the only ones the loss and the
retrieval use). Must not read records or compute losses.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from cotrain.errors import ModelLoadError

log = logging.getLogger("cotrain")

PROCESSOR_NOTE = "cotrain_clip.json"
"""What cotrain adds to a saved CLIP directory: the text length it was trained with."""
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipProcessor:
    """Images and captions -> CLIP inputs. ``max_text_tokens`` counts the end token."""

    def __init__(self, tokenizer, image_processor, max_text_tokens: int):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.max_text_tokens = int(max_text_tokens)
        self.end_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end_id
        self.truncated = 0
        """Captions cut to ``max_text_tokens`` so far (logged by the trainer)."""

    def images(self, images: list) -> torch.Tensor:
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]

    def token_ids(self, text: str) -> list[int]:
        """The caption's ids, cut to fit, ending with the end token (a real CLIP tokenizer adds it itself)."""
        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        if not ids or ids[-1] != self.end_id:
            ids = ids + [self.end_id]
        if len(ids) > self.max_text_tokens:
            self.truncated += 1
            ids = ids[:self.max_text_tokens - 1] + [self.end_id]
        return ids

    def pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) of token-id rows, right-padded to the longest."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, :len(r)] = 1
        return ids, mask

    def texts(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pad([self.token_ids(t) for t in texts])

    def save(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        self.tokenizer.save_pretrained(str(out))
        self.image_processor.save_pretrained(str(out))
        (out / PROCESSOR_NOTE).write_text(json.dumps({"max_text_tokens": self.max_text_tokens}) + "\n")

    @classmethod
    def load(cls, path: str | Path, max_text_tokens: int | None = None) -> ClipProcessor:
        """The processor saved beside a checkpoint; a missing file is a ModelLoadError naming it."""
        from transformers import AutoTokenizer
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        p = Path(path)
        missing = [] if (p / "preprocessor_config.json").is_file() else ["preprocessor_config.json"]
        if not ((p / "tokenizer.json").is_file() or (p / "vocab.json").is_file()):
            missing.append("tokenizer.json (or vocab.json + merges.txt)")
        if missing:
            raise ModelLoadError(f"CLIP checkpoint {p} lacks its processor files: {', '.join(missing)}. Copy them from "
                                 "the checkpoint's original folder (tokenizer and image preprocessor) into it")
        note = p / PROCESSOR_NOTE
        if max_text_tokens is None:
            max_text_tokens = json.loads(note.read_text())["max_text_tokens"] if note.is_file() else 77
        return cls(AutoTokenizer.from_pretrained(str(p)), CLIPImageProcessorPil.from_pretrained(str(p)), max_text_tokens)


def tiny_processor(clip_cfg) -> ClipProcessor:
    """The tiny model's processor: the byte-level tokenizer and CLIP's image steps at ``image_size``."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from cotrain.model.processor import build_byte_tokenizer

    c = clip_cfg
    images = CLIPImageProcessorPil(size={"shortest_edge": c.image_size},
                                   crop_size={"height": c.image_size, "width": c.image_size},
                                   image_mean=list(_CLIP_MEAN), image_std=list(_CLIP_STD))
    return ClipProcessor(build_byte_tokenizer(), images, c.max_text_tokens)


def clip_processor(cfg) -> ClipProcessor:
    """The processor of a ``model.kind: clip`` recipe without its weights (``cotrain inspect``)."""
    m = cfg.model
    return ClipProcessor.load(m.path, m.clip.max_text_tokens) if m.path else tiny_processor(m.clip)


def tiny_clip(clip_cfg, seed: int = 0):
    """(random CLIPModel, ClipProcessor) of the sizes in ``clip_cfg`` (``cotrain.config.ClipConfig``)."""
    from transformers import CLIPConfig, CLIPModel

    processor = tiny_processor(clip_cfg)
    tok = processor.tokenizer
    c = clip_cfg
    tower = dict(hidden_size=c.hidden_size, intermediate_size=4 * c.hidden_size, num_hidden_layers=c.num_layers,
                 num_attention_heads=4)
    config = CLIPConfig(
        text_config=dict(tower, vocab_size=len(tok), max_position_embeddings=c.max_text_tokens,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.pad_token_id),
        vision_config=dict(tower, image_size=c.image_size, patch_size=c.patch_size),
        projection_dim=c.projection_dim, logit_scale_init_value=c.logit_scale_init)
    torch.manual_seed(seed)
    return CLIPModel(config), processor


def load_clip(path: str | Path, max_text_tokens: int | None = None):
    """(CLIPModel, ClipProcessor) from a local transformers CLIP checkpoint directory."""
    from transformers import CLIPModel

    p = Path(path)
    if not (p / "config.json").is_file():
        raise ModelLoadError(f"{p} is not a CLIP checkpoint directory (no config.json); give the folder that holds "
                             "config.json, the weights and the processor files")
    model_type = json.loads((p / "config.json").read_text()).get("model_type")
    if model_type != "clip":
        raise ModelLoadError(f"{p}: model_type {model_type!r} is not a transformers CLIP model ('clip'); open_clip "
                             "checkpoints (RemoteCLIP, GeoRSCLIP) must be converted to the transformers layout first")
    processor = ClipProcessor.load(p, max_text_tokens)
    model = CLIPModel.from_pretrained(str(p))
    limit = model.config.text_config.max_position_embeddings
    if processor.max_text_tokens > limit:
        raise ModelLoadError(f"{p}: max_text_tokens {processor.max_text_tokens} exceeds the text tower's "
                             f"{limit} positions; set model.clip.max_text_tokens <= {limit}")
    return model, processor


def is_clip_checkpoint(path: str | Path) -> bool:
    p = Path(path) / "config.json"
    return p.is_file() and json.loads(p.read_text()).get("model_type") == "clip"


def build_clip(cfg):
    """(model, processor) of a ``model.kind: clip`` recipe, seeded by ``train.seed``."""
    m = cfg.model
    if m.path:
        return load_clip(m.path, m.clip.max_text_tokens)
    return tiny_clip(m.clip, seed=cfg.train.seed)


def _unwrap(model):
    return getattr(model, "module", model)


def embed_images(model, pixel_values: torch.Tensor) -> torch.Tensor:
    m = _unwrap(model)
    pooled = m.vision_model(pixel_values=pixel_values).pooler_output
    return torch.nn.functional.normalize(m.visual_projection(pooled), dim=-1)


def embed_texts(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    m = _unwrap(model)
    pooled = m.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
    return torch.nn.functional.normalize(m.text_projection(pooled), dim=-1)
