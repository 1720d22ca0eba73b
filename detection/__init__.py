"""Detection evaluation for VLMs and conventional detectors: parse responses, rotated IoU, APnc / mAP / mF1.

Modules: ``types`` (Det, GT), ``parse`` (VLM text -> detections), ``iou`` (vectorised rotated IoU),
``metrics`` (VOC AP, APnc, threshold sweep, mF1), ``dota`` (DOTA labelTxt / Task1 / mmrotate pickles,
patch split and merge). The CLI is ``tools/eval_det.py``.
"""
