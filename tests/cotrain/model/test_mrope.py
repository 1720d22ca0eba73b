"""Per-sample 3-D M-RoPE positions against each family's own ``get_rope_index``."""

import pytest
import torch

from cotrain.model.mrope import mrope_positions
from cotrain.model.tiny import build_tiny_model


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_positions_equal_the_models_rope_index(family, encoded_samples):
    processor, samples = encoded_samples(family)
    model = build_tiny_model(family, processor=processor, hidden_size=64)
    merge = model.config.vision_config.spatial_merge_size
    for s in samples:
        ids = s["input_ids"][None]
        grid = s["image_grid_thw"] if s["image_grid_thw"].shape[0] else None
        mine = mrope_positions(s["mm_token_type_ids"], grid, merge)
        if grid is None:  # the model's rule for text-only input: plain 0..n-1 on all three axes
            assert torch.equal(mine, torch.arange(ids.shape[1]).expand(3, -1))
            continue
        ref, _ = model.model.get_rope_index(ids, mm_token_type_ids=s["mm_token_type_ids"][None], image_grid_thw=grid)
        assert torch.equal(mine, ref[:, 0]), family


def test_positions_reject_inconsistent_grids():
    types = torch.tensor([0, 1, 1, 1, 1, 0])
    with pytest.raises(ValueError, match="grid"):
        mrope_positions(types, torch.tensor([[1, 4, 6]]), 2)  # 6 merged tokens, block has 4
    with pytest.raises(ValueError, match="image grids"):
        mrope_positions(types, None, 2)
