"""Running the protocols that apply to a model, and printing results as a table."""

from __future__ import annotations

from collections.abc import Sequence

from jifr.data.prepared import PreparedData
from jifr.diagnostics import attention_diagnostics, has_attention_diagnostics
from jifr.evaluate import (
    PROTOCOLS,
    ProtocolResult,
    evaluate_full,
    evaluate_keyframes,
    evaluate_keyframes_exposed,
    evaluate_sampled,
)
from jifr.models.base import Recommender

SHOWN = {
    "item_paper": ("HR@10", "NDCG@10", "HR@15", "NDCG@15"),
    "item_full": ("HR@10", "NDCG@10", "HR@15", "NDCG@15"),
    "keyframe": ("HR@1", "NDCG@1", "HR@3", "NDCG@3"),
    "keyframe_exposed": ("HR@1", "NDCG@1", "HR@3", "NDCG@3"),
    "attention": ("alpha_entropy_ratio", "alpha_logit_spread", "beta_visual_mean", "beta_visual_std"),
}
DIAGNOSTICS = ("attention",)  # reported with the protocols, not ranking metrics (jifr.diagnostics)


def has_exposures(data: PreparedData) -> bool:
    """Whether ``keyframe_exposed`` applies: the data has frame exposures and frame likes."""
    return data.exposures is not None and len(data.exposures) > 0 and len(data.likes) > 0


def applicable_protocols(model: Recommender, data: PreparedData) -> list[str]:
    protocols = ["item_paper", "item_full"] if model.ranks_items else []
    if model.ranks_frames and len(data.likes):
        protocols.append("keyframe")
    if model.ranks_frames and has_exposures(data):
        protocols.append("keyframe_exposed")
    if has_attention_diagnostics(model):
        protocols.append("attention")
    return protocols


def evaluate_model(
    model: Recommender,
    data: PreparedData,
    protocols: Sequence[str] | None = None,
    part: str = "test",
    repeats: int = 10,
    sampled_negatives: int = 1000,
    seed: int = 0,
) -> list[ProtocolResult]:
    """Run ``protocols`` (default: every one that applies to the model and the data)."""
    chosen = list(protocols) if protocols else applicable_protocols(model, data)
    unknown = [p for p in chosen if p not in (*PROTOCOLS, *DIAGNOSTICS)]
    if unknown:
        known = ", ".join((*PROTOCOLS, *DIAGNOSTICS))
        raise ValueError(f"unknown protocol(s) {', '.join(unknown)}; choose from {known}")
    results = []
    for protocol in chosen:
        if protocol == "item_paper":
            results.append(
                evaluate_sampled(model, data, part, n_negatives=sampled_negatives, repeats=repeats, seed=seed)
            )
        elif protocol == "item_full":
            results.append(evaluate_full(model, data, part))
        elif protocol == "attention":
            if not has_attention_diagnostics(model):
                raise ValueError(f"{model.model_name} has no attention to diagnose")
            results.append(attention_diagnostics(model, data, part))
        elif protocol == "keyframe_exposed":
            if not model.ranks_frames:
                raise ValueError(f"{model.model_name} does not rank key frames")
            if data.exposures is None:
                raise ValueError("keyframe_exposed needs frame exposures (frame_exposures table) in the data")
            results.append(evaluate_keyframes_exposed(model, data, part))
        else:
            if not model.ranks_frames:
                raise ValueError(f"{model.model_name} does not rank key frames")
            results.append(evaluate_keyframes(model, data, part))
    return results


def format_results(model_name: str, results: Sequence[ProtocolResult]) -> str:
    lines = []
    for r in results:
        cells = []
        for name in SHOWN[r.protocol]:
            std = r.std.get(name)
            cells.append(f"{name} {r.metrics[name]:.4f}" + (f"±{std:.4f}" if std is not None else ""))
        lines.append(f"{model_name:18s} {r.protocol:16s} " + "  ".join(cells) + f"  (n={r.n_queries})")
    return "\n".join(lines)
