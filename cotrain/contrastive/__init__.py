"""Contrastive RGB / IR / text training (CLIP-style) and retrieval evaluation.

One image encoder serves RGB and IR (an IR image enters as three equal channels); the text encoder
embeds the captions; the loss (``loss``) is the mean of three symmetric InfoNCE terms, RGB-text,
IR-text and RGB-IR, over the GLOBAL batch. Modules:

* ``model``: a CLIP model and its ``ClipProcessor`` (a local checkpoint, or a tiny random one);
* ``data``: triplet records -> tensors (``TripletBuilder``) and the collator;
* ``loss``: InfoNCE, the tri-modal loss of the three supervision settings, the gather with gradients;
* ``trainer``: ``ContrastiveTrainer`` (the data order, checkpoints and resume of ``CotrainTrainer``);
* ``recipe``: ``run(cfg)`` for ``model.kind: clip`` (what ``cotrain train`` runs for such a recipe);
* ``evaluate``: embeddings computed once, the six retrieval directions (``cotrain eval --bench``).

Must not import the Qwen-VL data path (conversations, encoder, packing).
"""
