"""Training reads frame features from a float32 copy kept in memory, into a reused buffer
(FrameStore.training_features): the same values as the memory map, so training is unchanged
bit for bit, and a graph whose features a later read overwrote cannot be back-propagated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jifr.data.prepared import PreparedData
from jifr.models import ModelInputs, build_model
from jifr.models import frames as frames_module
from jifr.models.frames import FrameStore
from jifr.train import TrainConfig, fit

QUICK = TrainConfig(epochs=2, batch_size=128, n_negatives=3, seed=3)


def trained_weights(name: str, data: PreparedData) -> dict[str, torch.Tensor]:
    model = build_model(name, ModelInputs.from_data(data), seed=1)
    fit(model, data, QUICK, show_progress=False)
    return model.state_dict()


@pytest.mark.parametrize("name", ["jifr", "cdl", "acf"])
def test_training_from_memory_equals_training_from_the_memory_map(
    name: str, tiny: PreparedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(tiny.frames.features, np.memmap)
    resident = trained_weights(name, tiny)
    monkeypatch.setattr(frames_module, "RESIDENT_LIMIT_BYTES", 0)  # every step reads the memory map
    mapped = trained_weights(name, tiny)
    assert resident.keys() == mapped.keys()
    for key in resident:
        assert torch.equal(resident[key], mapped[key]), key


def test_training_features_equal_features_and_reuse_one_buffer(tiny: PreparedData) -> None:
    store = FrameStore(tiny.frames)
    rows = torch.tensor([5, 0, 17, 5, 300])
    first = store.training_features(rows)
    assert torch.equal(first, store.features(rows))
    second = store.training_features(torch.tensor([1, 2]))
    assert second.untyped_storage().data_ptr() == first.untyped_storage().data_ptr()
    assert torch.equal(second, store.features(torch.tensor([1, 2])))


def test_a_graph_whose_features_were_overwritten_refuses_backward(tiny: PreparedData) -> None:
    store = FrameStore(tiny.frames)
    weight = torch.randn(store.dim, 4, requires_grad=True)
    stale = (store.training_features(torch.tensor([3, 4, 5])) @ weight).sum()
    store.training_features(torch.tensor([6, 7, 8]))  # the next step's read
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        stale.backward()
