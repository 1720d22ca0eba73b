"""Facts about the supported model families, in one place.

Everything that differs between Qwen2-VL, Qwen2.5-VL and Qwen3-VL and that the data side must
know (patch size, merge size, resize factor, box convention, HF class names) lives here, so the
resolution code, the box codec, the chat encoder and the model loader cannot disagree.
Must not import torch or transformers: the data engine uses it without a model.
"""

from __future__ import annotations

from dataclasses import dataclass

from cotrain.errors import ModelLoadError


@dataclass(frozen=True)
class FamilySpec:
    """Static facts of one model family."""

    name: str
    """Our name for the family, also the HF ``model_type``."""
    patch_size: int
    """Vision patch side in pixels (14 for Qwen2/2.5-VL, 16 for Qwen3-VL)."""
    merge_size: int
    """Spatial merge: merge_size x merge_size patches become one visual token."""
    temporal_patch_size: int
    """Frames per temporal patch; a still image is repeated to fill it and counts as 1 step."""
    box_convention: str
    """``"abs"``: integer pixels of the RESIZED image (Qwen2.5-VL); ``"norm1000"``: integers in [0, 1000)."""
    model_class: str
    """Name of the transformers ``...ForConditionalGeneration`` class."""
    config_class: str
    """Name of the transformers config class."""
    default_min_pixels: int
    default_max_pixels: int

    @property
    def factor(self) -> int:
        """Side of the pixel block that becomes one visual token (patch * merge)."""
        return self.patch_size * self.merge_size


FAMILIES: dict[str, FamilySpec] = {
    "qwen2_vl": FamilySpec("qwen2_vl", 14, 2, 2, "norm1000", "Qwen2VLForConditionalGeneration",
                           "Qwen2VLConfig", 4 * 28 * 28, 16384 * 28 * 28),
    "qwen2_5_vl": FamilySpec("qwen2_5_vl", 14, 2, 2, "abs", "Qwen2_5_VLForConditionalGeneration",
                             "Qwen2_5_VLConfig", 4 * 28 * 28, 16384 * 28 * 28),
    "qwen3_vl": FamilySpec("qwen3_vl", 16, 2, 2, "norm1000", "Qwen3VLForConditionalGeneration",
                           "Qwen3VLConfig", 4 * 32 * 32, 16384 * 32 * 32),
}


def get_family(name: str) -> FamilySpec:
    """Return the spec of ``name`` (an HF ``model_type``) or raise naming the supported ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ModelLoadError(
            f"unsupported model family {name!r}; supported: {', '.join(sorted(FAMILIES))}. "
            "Check 'model_type' in the checkpoint's config.json or the recipe's model.family."
        ) from None
