"""Each model takes exactly the settings it uses: one it ignores is an error, not a silent no-op."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from jifr.cli import app
from jifr.compare import CompareConfig
from jifr.data.prepared import PreparedData
from jifr.models import MODELS, ModelInputs, ModelSpec, build_model, model_config

JIFR_MODELS = ("jifr", "jifr_na", "jifr_content_att", "jifr_rating_att")
W0 = {"attention_dim", "l2_attention_input"}
HIDDEN = {"hidden_dim", "l2_attention"}


def test_each_jifr_variant_ignores_the_settings_of_its_switched_off_attention() -> None:
    assert set(MODELS["jifr"].ignored) == set(MODELS["jifr_content_att"].ignored) == set()
    assert set(MODELS["jifr_rating_att"].ignored) == W0
    assert set(MODELS["jifr_na"].ignored) == W0 | HIDDEN
    assert all(not spec.ignored for name, spec in MODELS.items() if name not in JIFR_MODELS)


def test_a_setting_the_model_does_not_use_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="jifr_na does not use attention_dim: its attention is switched off"):
        model_config("jifr_na", {"attention_dim": 16})
    with pytest.raises(ValueError, match="jifr_na does not use hidden_dim, l2_attention: its attention"):
        model_config("jifr_na", {"hidden_dim": 8, "l2_attention": 1.0, "l2": 0.01})
    with pytest.raises(ValueError, match="jifr_rating_att does not use l2_attention_input: its content attention"):
        model_config("jifr_rating_att", {"l2_attention_input": 1.0})
    with pytest.raises(ValueError, match="jifr does not use attention_dim: its content attention is switched off"):
        model_config("jifr", {"content_attention": "avg", "attention_dim": 16})
    assert model_config("jifr_rating_att", {"hidden_dim": 8}).hidden_dim == 8
    assert model_config("jifr_content_att", {"attention_dim": 8}).attention_dim == 8


def test_a_saved_config_rebuilds_its_model(tiny: PreparedData) -> None:
    """A checkpoint records every field, the unused ones at their defaults; that is not a change."""
    for name in JIFR_MODELS:
        model = build_model(name, ModelInputs.from_data(tiny))
        assert build_model(name, ModelInputs.from_data(tiny), dataclasses.asdict(model.config)).config == model.config


def _changed(value: Any) -> Any:
    if isinstance(value, str):
        return {"att": "avg", "avg": "att"}[value]
    return value + 8 if isinstance(value, int) else (value * 10 or 0.1)


def _outputs(spec: ModelSpec, config: Any, data: PreparedData) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    model = spec.model(config, ModelInputs.from_data(data), seed=0)
    users, positives = torch.tensor([0, 3, 5]), torch.tensor([1, 2, 4])
    negatives = torch.tensor([[6, 7], [8, 9], [10, 11]])
    return model.state_dict(), [t.detach() for t in model.triplet_scores(users, positives, negatives)]


def _same(
    a: tuple[dict[str, torch.Tensor], list[torch.Tensor]], b: tuple[dict[str, torch.Tensor], list[torch.Tensor]]
) -> bool:
    (state_a, out_a), (state_b, out_b) = a, b
    if state_a.keys() != state_b.keys() or any(state_a[k].shape != state_b[k].shape for k in state_a):
        return False
    return all(torch.equal(state_a[k], state_b[k]) for k in state_a) and all(
        torch.equal(x, y) for x, y in zip(out_a, out_b, strict=True)
    )


FEEDBACK_SETTINGS = ("frame_feedback_weight", "l2_frame_bias")


@pytest.mark.parametrize("name", JIFR_MODELS)
def test_ignored_settings_change_nothing_and_the_others_change_something(name: str, tiny: PreparedData) -> None:
    spec = MODELS[name]
    base = spec.config(**spec.fixed)
    reference = _outputs(spec, base, tiny)
    for field in dataclasses.fields(spec.config):
        if field.name in spec.fixed:
            continue
        try:
            config = dataclasses.replace(base, **{field.name: _changed(getattr(base, field.name))})
        except ValueError:  # e.g. collab_dim alone under rating attention: it matters, and is checked
            assert field.name in spec.settings
            continue
        if field.name in FEEDBACK_SETTINGS:  # act only with frame feedback (tests/test_frame_feedback.py)
            with pytest.raises(ValueError, match="need frame feedback"):
                _outputs(spec, config, tiny)
            continue
        assert _same(reference, _outputs(spec, config, tiny)) == (field.name in spec.ignored), field.name


def test_models_lists_only_the_settings_each_model_uses() -> None:
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    settings = {lines[i].split()[0]: lines[i + 1] for i in range(0, len(lines), 2)}
    assert "attention_dim" not in settings["jifr_na"] and "hidden_dim" not in settings["jifr_na"]
    assert "l2_projection=0.01" in settings["jifr_na"]
    assert "hidden_dim=32" in settings["jifr_rating_att"] and "attention_dim" not in settings["jifr_rating_att"]
    assert "attention_dim=32" in settings["jifr"] and "content_attention=att" in settings["jifr"]


def test_compare_applies_a_shared_setting_to_the_models_that_use_it() -> None:
    config = CompareConfig(
        models=("jifr_na", "jifr_rating_att", "jifr"), settings={"attention_dim": 16, "hidden_dim": 8}
    )
    assert config.settings_of("jifr_na") == {}
    assert config.settings_of("jifr_rating_att") == {"hidden_dim": 8}
    assert config.settings_of("jifr") == {"attention_dim": 16, "hidden_dim": 8}
    with pytest.raises(ValueError, match="apply to none of jifr_na"):
        CompareConfig(models=("jifr_na",), settings={"attention_dim": 16})
    with pytest.raises(ValueError, match="jifr_na does not use attention_dim"):
        CompareConfig(models=("jifr_na", "jifr"), settings={"jifr_na.attention_dim": 16})
