"""Synthetic remote-sensing data: scenes, infrared twins and canonical records for every task.

Workflow: ``plan_scenes`` decides every scene up front (class, size, split by scene) from the
seed; ``render_scene`` lays out land covers (``scenes``), places and paints DOTA-style objects
(``objects``) and adds sensor noise, giving an RGB image and its thermal-infrared-like twin;
``write_scene`` saves them (PNG, or tiled TIFF for large zoom images); the builders in ``tasks``
turn each scene into records of the eleven ``DATASETS`` (syn_cls, syn_vqa, syn_mcq, syn_grounding,
syn_det, syn_cap_rgb, syn_cap_ir, syn_cap_dual, syn_zoom, syn_conv, syn_triplet); ``generate_demo_data``
writes them as ``records/<dataset>_<split>.jsonl`` plus ``manifest.json``, and
``ensure_demo_data`` does so only when the manifest is missing or was made with other parameters.
``localize`` is a second, separate set (large objects on plain ground: loc_grounding, loc_det)
with its own ``ensure_localize_data``.

This package must not be imported by the training or inference path except through
``ensure_demo_data``; it knows nothing of models, prompts or box rendering.
"""

from cotrain.data.synthetic.generate import (
    GENERATOR_VERSION, SceneSpec, ensure_demo_data, generate_demo_data, image_paths, plan_scenes, render_scene,
    write_scene)
from cotrain.data.synthetic.localize import LOC_KINDS, ensure_localize_data, generate_localize_data
from cotrain.data.synthetic.objects import KINDS, LABELS, PlacedObject
from cotrain.data.synthetic.scenes import CLASS_NAMES, COVER_NAMES, COVERS, GSD_M, SCENE_CLASSES
from cotrain.data.synthetic.tasks import DATASETS, SceneInfo, unique_expressions

__all__ = [
    "CLASS_NAMES", "COVERS", "COVER_NAMES", "DATASETS", "GENERATOR_VERSION", "GSD_M", "KINDS", "LABELS",
    "PlacedObject", "SCENE_CLASSES", "SceneInfo", "SceneSpec", "ensure_demo_data", "generate_demo_data",
    "LOC_KINDS", "ensure_localize_data", "generate_localize_data", "image_paths", "plan_scenes", "render_scene", "unique_expressions", "write_scene",
]
