"""Detection evaluation for VLMs next to conventional detectors: parse responses, APnc / mAP / mF1, the table.

Modules: ``parse`` (VLM text -> detections with diagnostics), ``labels`` (synonyms, broader concepts,
``LabelNormaliser``), ``json_repair``, ``metrics`` (VOC AP, APnc, threshold sweep, mF1), ``records``
(canonical records as ground truth, oracle answers), ``synthetic`` (the simulated scored detector,
DOTA-like benchmark data), ``report`` (the comparison table), ``evaluate`` (what ``cotrain eval-det``
runs), ``cli`` / ``cli_demo`` (the subcommands). Geometry, DOTA formats and patch splitting live in
``cotrain.geometry`` and ``cotrain.dota``.

The stable functions are exported here: ``parse_response``, ``apnc`` and ``evaluate`` (the function;
the module of the same name is ``sys.modules["detection.evaluate"]``).
"""

from __future__ import annotations

from detection.evaluate import evaluate
from detection.metrics import apnc
from detection.parse import parse_response

__all__ = ["apnc", "evaluate", "parse_response"]
