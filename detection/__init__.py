"""Detection evaluation for VLMs and conventional detectors: parse responses, rotated IoU, APnc / mAP / mF1.

Modules: ``types`` (Det, GT), ``parse`` (VLM text -> detections), ``iou`` (vectorised rotated IoU),
``metrics`` (VOC AP, APnc, threshold sweep, mF1), ``dota`` (DOTA labelTxt / Task1 / mmrotate pickles),
``split`` (patches of large images and the merge back with rotated NMS), ``records`` (canonical records
as ground truth, simulated detectors), ``report`` (the comparison table). The CLI is ``cotrain eval-det``.
"""
