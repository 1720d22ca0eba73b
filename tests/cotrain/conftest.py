"""Fixtures shared by the cotrain tests: encoded samples of mixed shapes (packing, attention, logits)."""

import numpy as np
import pytest
from PIL import Image

from cotrain.data.encoder import ChatEncoder
from cotrain.model.processor import build_offline_processor


def _image(h, w, seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _conv(question, answer, n_images):
    content = [{"type": "image", "index": i} for i in range(n_images)] + [{"type": "text", "text": question}]
    return {"messages": [{"role": "user", "content": content},
                         {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
            "images": [], "meta": {"id": question[:8]}}


SHAPES = [[(56, 84)], [], [(112, 56), (56, 56)], [(84, 112)], []]
"""Images per sample: one, none, two of different grids, one, none (text-only samples pack too)."""


def _samples(family):
    """(processor, encoded samples of SHAPES) for a family."""
    processor = build_offline_processor(family)
    encoder = ChatEncoder(processor, family)
    factor = 32 if family == "qwen3_vl" else 28
    out = []
    for k, shapes in enumerate(SHAPES):
        imgs = [_image(h // 28 * factor, w // 28 * factor, 10 * k + j) for j, (h, w) in enumerate(shapes)]
        s = encoder.encode(_conv(f"Question {k}: what is at {k * 7}?", f"answer {k} " * (k + 1), len(imgs)), imgs)
        out.append(s)
    return processor, out




@pytest.fixture
def encoded_samples():
    """``encoded_samples(family) -> (processor, samples)``: five samples with 0, 1 or 2 images of different grids."""
    return _samples
