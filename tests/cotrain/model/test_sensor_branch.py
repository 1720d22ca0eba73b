"""The sensor branch: patch rows against transformers, the widened embedding (init, save / reload, what trains),
band samples (token counts, M-RoPE positions, packing), and the errors it names."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cotrain.data.collate import PackCollator, PaddingCollator, model_inputs
from cotrain.data.encoder import ChatEncoder
from cotrain.errors import BadRecordError, ConfigError, ModelLoadError
from cotrain.model.processor import build_offline_processor
from cotrain.model.sensor_branch import channel_layout, patch_embed, require_bands, widen_patch_embed
from cotrain.model.tiny import build_tiny_model
from cotrain.sensor_pixels import BandImage, layout_pixels, open_pixels, patch_rows

BANDS = ["B02", "B03", "B04", "B08", "B11"]
FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]


def _factor(family):
    return 32 if family == "qwen3_vl" else 28


def _rgb(h, w, seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _band_image(h, w, seed, names=("B08", "B11")):
    rng = np.random.default_rng(seed)
    return BandImage(_rgb(h, w, seed + 100), rng.normal(size=(len(names), h, w)).astype(np.float32), tuple(names))


def _conv(n_images, text="What is this?", answer="meadow"):
    content = [{"type": "image", "index": i} for i in range(n_images)] + [{"type": "text", "text": text}]
    return {"messages": [{"role": "user", "content": content},
                         {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
            "images": [], "meta": {"id": "r0"}}


@pytest.mark.parametrize("family", FAMILIES)
def test_patch_rows_match_the_transformers_image_processor(family):
    processor = build_offline_processor(family)
    ip = processor.image_processor
    f = _factor(family)
    im = _rgb(2 * f, 3 * f, 0)
    want = ip(images=[im], do_resize=False, return_tensors="pt")["pixel_values"].float()
    got = layout_pixels(im, ("R", "G", "B"), ip)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    wide = layout_pixels(im, ("R", "G", "B", "B08"), ip)  # an RGB image: its band channel is 0
    per = ip.temporal_patch_size * ip.patch_size ** 2
    torch.testing.assert_close(wide[:, :3 * per], want, atol=1e-5, rtol=1e-5)
    assert wide.shape[1] == 4 * per and not wide[:, 3 * per:].any()


def test_patch_rows_hand_case():
    # 1 channel, 4 x 4, patch 2, merge 2, temporal 2: one merge window of 4 patches, row-major inside it
    planes = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    rows = patch_rows(planes, patch=2, temporal=2, merge=2)
    assert rows.shape == (4, 8)
    assert rows[0].tolist() == [0, 1, 4, 5, 0, 1, 4, 5]  # top-left patch, repeated over the 2 time steps
    assert rows[1].tolist()[:4] == [2, 3, 6, 7] and rows[3].tolist()[:4] == [10, 11, 14, 15]
    with pytest.raises(ValueError, match="do not tile"):
        patch_rows(np.zeros((1, 6, 4), np.float32), patch=2, temporal=2, merge=2)


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_init_widened_model_is_the_rgb_model(family):
    processor = build_offline_processor(family)
    torch.manual_seed(0)
    model = build_tiny_model(family, processor=processor, hidden_size=64).eval()
    f = _factor(family)
    plain = ChatEncoder(processor, family).encode(_conv(1), [_rgb(2 * f, 2 * f, 1)])
    with torch.no_grad():
        before = model(**model_inputs(PaddingCollator(processor.tokenizer.pad_token_id)([plain]))).logits
    layout = widen_patch_embed(model, BANDS)
    assert layout == ("R", "G", "B", *BANDS) == channel_layout(model)
    assert model.config.vision_config.in_channels == 8 and patch_embed(model).proj.in_channels == 8
    enc = ChatEncoder(processor, family, channels=layout)
    for image in (_rgb(2 * f, 2 * f, 1), _band_image(2 * f, 2 * f, 1)):  # bands x 0 kernels change nothing
        im = image if isinstance(image, Image.Image) else BandImage(_rgb(2 * f, 2 * f, 1), image.bands, image.names)
        s = enc.encode(_conv(1), [im])
        assert s["pixel_values"].shape[1] == 8 * plain["pixel_values"].shape[1] // 3
        assert torch.equal(s["input_ids"], plain["input_ids"]) and torch.equal(s["image_grid_thw"],
                                                                                plain["image_grid_thw"])
        with torch.no_grad():
            after = model(**model_inputs(PaddingCollator(processor.tokenizer.pad_token_id)([s]))).logits
        torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert widen_patch_embed(model, BANDS[:2]) == layout  # nothing new: unchanged


def test_rgb_mean_init_and_bad_init():
    processor = build_offline_processor("qwen2_5_vl")
    model = build_tiny_model("qwen2_5_vl", processor=processor, hidden_size=64)
    w = patch_embed(model).proj.weight.detach().clone()
    widen_patch_embed(model, ["B08", "B11"], init="rgb_mean")
    new = patch_embed(model).proj.weight.detach()
    assert torch.equal(new[:, :3], w)
    for c in (3, 4):
        torch.testing.assert_close(new[:, c], w.mean(dim=1))
    with pytest.raises(ConfigError, match="sensor_init"):
        widen_patch_embed(model, ["B12"], init="random")


def test_save_reload_keeps_the_branch(tmp_path):
    from cotrain.model.loader import load_model_and_processor, save_model_and_processor

    processor = build_offline_processor("qwen2_5_vl")
    torch.manual_seed(0)
    model = build_tiny_model("qwen2_5_vl", processor=processor, hidden_size=64)
    widen_patch_embed(model, BANDS)
    with torch.no_grad():
        patch_embed(model).proj.weight.normal_()
    save_model_and_processor(model, processor, tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["sensor_channels"] == ["R", "G", "B", *BANDS]
    again, proc2, _ = load_model_and_processor(tmp_path / "ckpt")
    assert channel_layout(again) == channel_layout(model)
    assert torch.equal(patch_embed(again).proj.weight, patch_embed(model).proj.weight)
    enc = ChatEncoder(proc2, "qwen2_5_vl", channels=channel_layout(again))
    s = enc.encode(_conv(1), [_band_image(56, 56, 3, names=("B08",))])
    batch = model_inputs(PaddingCollator(proc2.tokenizer.pad_token_id)([s]))
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(**batch).logits, model.eval()(**batch).logits)
    require_bands(again, ["B08", "B11"], "benchmark 'x'")
    with pytest.raises(ModelLoadError, match=r"band\(s\) VV, VH .* input channels: R, G, B, B02"):
        require_bands(again, ["VV", "VH"], "benchmark 'x'")


def test_rgb_model_refuses_band_images_and_unknown_band_channels():
    processor = build_offline_processor("qwen2_5_vl")
    with pytest.raises(BadRecordError, match="RGB input only"):
        ChatEncoder(processor, "qwen2_5_vl").encode(_conv(1), [_band_image(56, 56, 0)])
    enc = ChatEncoder(processor, "qwen2_5_vl", channels=("R", "G", "B", "B08"))
    with pytest.raises(BadRecordError, match="band B11 has no channel"):
        enc.encode(_conv(1), [_band_image(56, 56, 0)])


def test_band_samples_keep_mrope_positions_and_pack_like_padding():
    processor = build_offline_processor("qwen2_5_vl")
    torch.manual_seed(0)
    model = build_tiny_model("qwen2_5_vl", processor=processor, hidden_size=64)
    model.set_attn_implementation("sdpa")
    layout = widen_patch_embed(model, ["B08", "B11"])
    with torch.no_grad():
        patch_embed(model).proj.weight[:, 3:].normal_()  # trained-looking band kernels
    enc = ChatEncoder(processor, "qwen2_5_vl", channels=layout)
    shapes = [[(56, 84)], [], [(112, 56), (56, 56)], [(84, 56)]]
    samples, composites = [], []
    for k, shape in enumerate(shapes):
        ims = [_band_image(h, w, 10 * k + j) if j % 2 == 0 else _rgb(h, w, 10 * k + j)
               for j, (h, w) in enumerate(shape)]
        samples.append(enc.encode(_conv(len(ims), f"q{k}", f"a{k} " * (k + 1)), ims))
        flat = [im.composite if isinstance(im, BandImage) else im for im in ims]
        composites.append(ChatEncoder(processor, "qwen2_5_vl").encode(_conv(len(ims), f"q{k}", f"a{k} " * (k + 1)),
                                                                      flat))
    pad = processor.tokenizer.pad_token_id
    a, b = PaddingCollator(pad)(samples), PaddingCollator(pad)(composites)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["image_grid_thw"], b["image_grid_thw"])
    rope = model.model.get_rope_index
    pos_a = rope(a["input_ids"], mm_token_type_ids=a["mm_token_type_ids"], image_grid_thw=a["image_grid_thw"],
                 attention_mask=a["attention_mask"])[0]
    pos_b = rope(b["input_ids"], mm_token_type_ids=b["mm_token_type_ids"], image_grid_thw=b["image_grid_thw"],
                 attention_mask=b["attention_mask"])[0]
    assert torch.equal(pos_a, pos_b)  # each image keeps its own span and grid: the same 3-D positions

    def loss_and_grads(batch):
        model.zero_grad()
        loss = model(**model_inputs(batch)).loss
        loss.backward()
        return loss.detach(), patch_embed(model).proj.weight.grad.clone()

    padded_loss, padded_grad = loss_and_grads(a)
    packed = PackCollator(pad_token_id=pad, spatial_merge_size=2, flatten=False)([samples[:2], samples[2:]])
    packed_loss, packed_grad = loss_and_grads(packed)
    torch.testing.assert_close(packed_loss, padded_loss, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(packed_grad, padded_grad, rtol=1e-4, atol=1e-6)
    assert padded_grad[:, 3:].abs().sum() > 0  # the band kernels learn


def test_branch_trains_with_the_tower_frozen_and_under_lora(tmp_path):
    from cotrain.config import LoraConfig, ModelConfig
    from cotrain.model.trainable import apply_freeze, apply_lora, load_with_adapter, save_adapter

    processor = build_offline_processor("qwen2_5_vl")
    torch.manual_seed(0)
    model = build_tiny_model("qwen2_5_vl", processor=processor, hidden_size=64)
    widen_patch_embed(model, ["B08"])
    cfg = ModelConfig(train_vision=False, train_language=False)
    apply_freeze(model, cfg)
    assert patch_embed(model).proj.weight.requires_grad
    assert not any(p.requires_grad for n, p in model.named_parameters() if ".blocks." in n)
    off = ModelConfig(train_vision=False, train_sensor_branch=False)
    apply_freeze(model, off)
    assert not patch_embed(model).proj.weight.requires_grad

    lora_cfg = ModelConfig(train_vision=False, lora=LoraConfig(enabled=True))
    peft_model = apply_lora(model, lora_cfg)
    assert patch_embed(peft_model).proj.weight.requires_grad
    with torch.no_grad():
        patch_embed(peft_model).proj.weight.fill_(0.25)
    out = save_adapter(peft_model, tmp_path / "adapter")
    assert json.loads((out / "cotrain_adapter.json").read_text())["sensor_channels"] == ["R", "G", "B", "B08"]
    torch.manual_seed(0)
    base = build_tiny_model("qwen2_5_vl", processor=processor, hidden_size=64)  # a plain RGB base
    loaded = load_with_adapter(base, out)
    assert channel_layout(loaded.get_base_model()) == ("R", "G", "B", "B08")
    assert torch.all(patch_embed(loaded).proj.weight == 0.25)


@pytest.fixture(scope="module")
def ms_root(tmp_path_factory):
    from cotrain.data.synthetic.multisensor import generate_multisensor_data

    root = tmp_path_factory.mktemp("ms")
    generate_multisensor_data(root, n_patches=12, seed=2)
    return root


def test_band_images_of_a_branch_dataset(ms_root):
    from cotrain.boxes import BoxCodec
    from cotrain.records import read_records
    from cotrain.tasks import build_conversation

    rec = read_records(ms_root / "records" / "ms_cls_train.jsonl")[0]
    conv = build_conversation(rec, image_root=str(ms_root), resized_sizes=[(56, 56), (56, 56)], codec=BoxCodec("abs"), seed=0, epoch=0,
                              index=0)
    s2, s1 = conv.images
    stats = str(ms_root / "stats" / "s2.json")
    s2["branch"] = s1["branch"] = {"bands": ["B08", "B11", "VV"], "stats": stats}
    im = open_pixels({**s2, "resized_wh": (56, 56)}, "r", target_wh=(56, 56))
    assert isinstance(im, BandImage) and im.size == (56, 56) and im.names == ("B08", "B11")
    stats_all = json.loads((ms_root / "stats" / "s2.json").read_text())["bands"]
    assert set(stats_all) >= {"B02", "B08", "B12"} and (ms_root / "stats" / "s1.json").is_file()
    # z-scores: about zero mean over a patch's valid pixels is not guaranteed, but finite and O(1)
    assert np.isfinite(im.bands).all() and np.abs(im.bands).max() < 20
    with pytest.raises(ConfigError, match="VV"):  # the S2 statistics hold no SAR band
        open_pixels({**s1, "branch": {"bands": ["VV"], "stats": stats}}, "r", target_wh=(56, 56))
    plain = open_pixels({k: v for k, v in s2.items() if k != "branch"}, "r", target_wh=(56, 56))
    assert isinstance(plain, Image.Image)


def test_recipe_errors_name_the_fix(ms_root, tmp_path):
    from cotrain.config import check_files, load_config

    base = [f"data.datasets=[{{name: p, records: {ms_root}/records/ms_pair_train.jsonl, image_root: {ms_root}, "
            "sensor_branch: {bands: [B08], stats: STATS}}]"]
    with pytest.raises(ConfigError, match="unknown band 'B99'"):
        load_config(None, [base[0].replace("[B08]", "[B99]")])
    with pytest.raises(ConfigError, match="sensor_branch.bands is empty"):
        load_config(None, [base[0].replace("[B08]", "[]")])
    cfg = load_config(None, [base[0].replace("STATS", str(tmp_path / "none.json"))])
    with pytest.raises(ConfigError, match="cotrain sensors stats"):
        check_files(cfg)
    (tmp_path / "s.json").write_text(json.dumps({"bands": {"B02": {"mean": 1.0, "std": 1.0}}}))
    cfg = load_config(None, [base[0].replace("STATS", str(tmp_path / "s.json"))])
    with pytest.raises(ConfigError, match=r"no statistics for band\(s\) B08"):
        check_files(cfg)


def test_statistics_are_read_again_when_the_file_changes(tmp_path):
    import os

    from cotrain.sensor_pixels import statistics
    from cotrain.sensors import write_statistics

    path = tmp_path / "s2.json"
    write_statistics({"B08": {"mean": 1.0, "std": 2.0}}, path)
    assert statistics(path)["B08"]["mean"] == 1.0
    write_statistics({"B08": {"mean": 5.0, "std": 2.0}}, path)  # same size: only the time tells them apart
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert statistics(path)["B08"]["mean"] == 5.0
    path.unlink()
    with pytest.raises(ConfigError, match="cannot read band statistics"):
        statistics(path)
