"""Inference backends behind one interface: ``generate(requests) -> responses``.

``base`` defines the plain-data request/response types (image sizes come from ``cotrain.resolution``);
``hf`` runs transformers ``generate`` anywhere; ``vllm`` runs vLLM on a GPU machine.
"""

from cotrain.inference.base import (Backend, GenerationRequest, GenerationResponse, SamplingParams,
                                    load_request_images, override_limits)
from cotrain.resolution import PixelLimits, resized_size

BACKENDS = ("hf", "vllm")


def load_backend(name: str, model_path: str, **kwargs) -> Backend:
    """Build backend ``name`` ("hf" or "vllm") for a saved checkpoint; kwargs go to its ``from_checkpoint``."""
    from cotrain.errors import ConfigError

    if name == "hf":
        from cotrain.inference.hf import HFBackend

        return HFBackend.from_checkpoint(model_path, **kwargs)
    if name == "vllm":
        from cotrain.inference.vllm import VLLMBackend

        return VLLMBackend.from_checkpoint(model_path, **kwargs)
    raise ConfigError(f"unknown backend {name!r}; choose one of {BACKENDS}")


__all__ = ["Backend", "BACKENDS", "GenerationRequest", "GenerationResponse", "PixelLimits", "SamplingParams",
           "load_backend", "load_request_images", "override_limits", "resized_size"]
