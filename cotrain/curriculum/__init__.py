"""The IRGPT bi-cross-modal curriculum: difficulty scores, tiers, schedules and loss weights.

* ``transfer`` (lesson 1): IR-visible transfer difficulty from frozen image features: a Gaussian-kernel
  MMD^2 between the two sets and each IR sample's projection onto the visible direction, computed
  with the kernel trick in chunks;
* ``alignment`` (lesson 2): IR-text alignment difficulty from per-pair CLIP losses before and after a
  warm-up run, the loss variation rate and the loss weights;
* ``schedule``: the two rankings merged, M tiers, the schedules of the paper's ablation, the score
  file keyed by record id, and the order a curriculum imposes on a dataset's slots in the mixture.

* ``score``: both lessons on a records file (``score_difficulty``) and the warm-up run that lesson 2
  needs (``run_warmup``: an ordinary ``model.kind: clip`` run from a saved starting checkpoint).
"""
