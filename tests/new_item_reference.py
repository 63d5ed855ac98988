"""The brute-force reference for new items: the same model with the item in its catalogue.

A new item (frames, no interactions) is scored as the trained model would score it had the
item been in its catalogue all along with its free parameters at their prior mean: 0 for
every per-item embedding and bias, and for VPOI the value its two regularisers give it,
lambda_item / (l2 + lambda_item) P cbar_i. ``with_item`` builds that model, so its ordinary
``score_all`` and ``score_frames`` are the reference for ``new_item_scores`` and
``new_frame_scores``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from jifr.data.prepared import ItemFrames, PreparedData
from jifr.models import ModelInputs, Recommender, build_model


def with_item(model: Recommender, data: PreparedData, features: np.ndarray) -> Recommender:
    """``model`` with one more item, the last, whose frames have ``features`` (F, D) (eval mode)."""
    frames = ItemFrames(
        np.r_[data.frames.indptr, data.frames.n_frames + len(features)].astype(np.int64),
        np.concatenate([np.asarray(data.frames.features), features.astype(data.frames.features.dtype)]),
    )
    inputs = ModelInputs(data.n_users, data.n_items + 1, frames, data.train)
    config = dataclasses.asdict(model.config) if dataclasses.is_dataclass(model.config) else {}
    extended = build_model(model.model_name, inputs, config, seed=0)
    state, shapes = model.state_dict(), {key: value.shape for key, value in extended.state_dict().items()}
    for key, value in state.items():
        if value.dim() and shapes[key][0] == value.shape[0] + 1:  # a per-item parameter: 0 for the new item
            state[key] = torch.cat([value, value.new_zeros(1, *value.shape[1:])])
    if model.model_name == "vpoi":
        c = model.config
        mean = torch.from_numpy(features.astype(data.frames.features.dtype).astype(np.float32)).mean(0)
        state["item_collab.weight"][-1] = c.lambda_item / (c.l2 + c.lambda_item) * model.projection(mean).detach()
    extended.load_state_dict(state)
    return extended.eval()
