"""The models, by name. Each entry: (model class, config class, fixed config values)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jifr.models.acf import ACF, ACFConfig
from jifr.models.base import ModelInputs, Recommender, bpr_loss, config_from_dict
from jifr.models.bpr import BPR, BPRConfig
from jifr.models.cdl import CDL, CDLConfig
from jifr.models.content import ContentCosine, ContentCosineConfig
from jifr.models.jifr import JIFR, JIFRConfig
from jifr.models.popularity import NoConfig, Popularity, RandomFrames
from jifr.models.vbpr import VBPR, VBPRConfig
from jifr.models.vpoi import VPOI, VPOIConfig


@dataclass(frozen=True)
class ModelSpec:
    model: Callable[..., Recommender]  # (config, inputs, seed=...) -> model
    config: type
    fixed: dict[str, Any] = field(default_factory=dict)
    summary: str = ""

    @property
    def ignored(self) -> dict[str, str]:
        """The settings the model ignores given its fixed values, each with the reason."""
        return unused_settings(self.config(**self.fixed))

    @property
    def settings(self) -> tuple[str, ...]:
        """The settings that can be changed and that the model uses."""
        ignored = self.ignored
        return tuple(
            f.name for f in dataclasses.fields(self.config) if f.name not in self.fixed and f.name not in ignored
        )


MODELS: dict[str, ModelSpec] = {
    "pop": ModelSpec(Popularity, NoConfig, summary="item popularity (a floor for items)"),
    "rnd": ModelSpec(RandomFrames, NoConfig, summary="random frame order (a floor for key frames)"),
    "content_cosine": ModelSpec(
        ContentCosine, ContentCosineConfig, summary="cosine of user's mean training frame feature and each frame"
    ),
    "content_cosine_centered": ModelSpec(
        ContentCosine, ContentCosineConfig, {"center": True}, "content_cosine after subtracting the mean frame feature"
    ),
    "bpr": ModelSpec(BPR, BPRConfig, summary="BPR matrix factorisation"),
    "vbpr": ModelSpec(VBPR, VBPRConfig, summary="VBPR with bias terms, item feature = mean of frames"),
    "acf": ModelSpec(ACF, ACFConfig, summary="ACF: item- and frame-level attention over the user's history"),
    "cdl": ModelSpec(CDL, CDLConfig, summary="CDL: user-history and image networks, content only (no free embeddings)"),
    "vpoi": ModelSpec(
        VPOI, VPOIConfig, summary="VPOI: BPR with item and user embeddings tied to projected image features"
    ),
    "jifr": ModelSpec(JIFR, JIFRConfig, summary="JIFR: content attention + rating attention"),
    "jifr_na": ModelSpec(
        JIFR, JIFRConfig, {"content_attention": "avg", "rating_attention": "avg"}, "JIFR without attention (avg/avg)"
    ),
    "jifr_content_att": ModelSpec(
        JIFR, JIFRConfig, {"content_attention": "att", "rating_attention": "avg"}, "JIFR, content attention only"
    ),
    "jifr_rating_att": ModelSpec(
        JIFR, JIFRConfig, {"content_attention": "avg", "rating_attention": "att"}, "JIFR, rating attention only"
    ),
}


def unused_settings(config: Any) -> dict[str, str]:
    """The settings ``config`` ignores (given its other values), each with the reason."""
    unused = getattr(config, "unused_settings", None)
    return unused() if unused is not None else {}


def model_config(name: str, overrides: dict[str, Any] | None = None) -> Any:
    """The resolved config of model ``name``. Unknown keys, changes to fixed keys and changes to
    settings the model does not use (e.g. attention sizes of a model without attention) are errors."""
    spec = _spec(name)
    overrides = dict(overrides or {})
    clash = {k for k in spec.fixed if k in overrides and overrides[k] != spec.fixed[k]}
    if clash:
        raise ValueError(f"{name} fixes {', '.join(sorted(clash))}; use another model name to change it")
    config = config_from_dict(spec.config, overrides | spec.fixed)
    unused = unused_settings(config)
    defaults = {f.name: f.default for f in dataclasses.fields(spec.config)}
    changed = sorted(k for k in overrides if k in unused and overrides[k] != defaults[k])
    if changed:
        reasons: dict[str, list[str]] = {}
        for key in changed:
            reasons.setdefault(unused[key], []).append(key)
        raise ValueError("; ".join(f"{name} does not use {', '.join(keys)}: {why}" for why, keys in reasons.items()))
    return config


def build_model(name: str, inputs: ModelInputs, overrides: dict[str, Any] | None = None, seed: int = 0) -> Recommender:
    """A freshly initialised model; the same ``seed`` gives the same initial weights."""
    model = _spec(name).model(model_config(name, overrides), inputs, seed=seed)
    model.model_name = name
    return model


def _spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name]


__all__ = [
    "MODELS",
    "ModelInputs",
    "ModelSpec",
    "Recommender",
    "bpr_loss",
    "build_model",
    "model_config",
    "unused_settings",
]
