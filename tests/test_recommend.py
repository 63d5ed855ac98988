"""Serving: the items a user already has (in any split) are never recommended again, and k is checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jifr.checkpoint import save_checkpoint
from jifr.cli import app
from jifr.data.prepared import PreparedData
from jifr.models import ModelInputs, build_model
from jifr.recommend import recommend_for_user


def items_of(data: PreparedData, user: int, part: str) -> set[str]:
    interactions = data.part(part)
    return {str(data.item_ids[i]) for i in interactions.items[interactions.users == user]}


def a_user_with_held_out_items(data: PreparedData) -> int:
    return next(u for u in range(data.n_users) if items_of(data, u, "valid") and items_of(data, u, "test"))


def test_every_known_interaction_is_left_out(tiny: PreparedData) -> None:
    model = build_model("bpr", ModelInputs.from_data(tiny), seed=0)
    u = a_user_with_held_out_items(tiny)
    user = str(tiny.user_ids[u])
    known = items_of(tiny, u, "train") | items_of(tiny, u, "valid") | items_of(tiny, u, "test")
    shown = {item["item_id"] for item in recommend_for_user(model, tiny, user, k=tiny.n_items)["items"]}
    assert not shown & known
    assert len(shown) == tiny.n_items - len(known)
    every = recommend_for_user(model, tiny, user, k=tiny.n_items, exclude_seen=False)["items"]
    assert {item["item_id"] for item in every} == {str(i) for i in tiny.item_ids}


def test_known_items_is_the_union_of_the_splits(tiny: PreparedData) -> None:
    known = tiny.interacted
    for u in (0, 7, tiny.n_users - 1):
        expected = set()
        for part in ("train", "valid", "test"):
            expected |= set(tiny.part(part).items[tiny.part(part).users == u].tolist())
        assert known[u].indices.tolist() == sorted(expected)


def test_k_zero_is_empty_and_negative_k_is_an_error(tiny: PreparedData) -> None:
    model = build_model("bpr", ModelInputs.from_data(tiny), seed=0)
    user = str(tiny.user_ids[0])
    assert recommend_for_user(model, tiny, user, k=0)["items"] == []
    with pytest.raises(ValueError, match="k must be >= 0"):
        recommend_for_user(model, tiny, user, k=-1)
    with pytest.raises(ValueError, match="does not rank items"):
        recommend_for_user(build_model("rnd", ModelInputs.from_data(tiny)), tiny, user)


@pytest.fixture(scope="module")
def run(tiny: PreparedData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_model("jifr_na", ModelInputs.from_data(tiny), seed=0)
    return save_checkpoint(tmp_path_factory.mktemp("recommend") / "run", model, tiny)


def recommend(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["recommend", *(str(a) for a in args)])
    return result.exit_code, result.output


def test_cli_leaves_out_held_out_items_unless_asked(run: Path, tiny: PreparedData) -> None:
    u = a_user_with_held_out_items(tiny)
    user = str(tiny.user_ids[u])
    held_out = items_of(tiny, u, "valid") | items_of(tiny, u, "test")
    code, out = recommend(run, "--user", user, "-k", str(tiny.n_items), "--json")
    assert code == 0, out
    items = json.loads(out)["items"]
    assert not {item["item_id"] for item in items} & held_out and items[0]["key_frame"] == items[0]["frames"][0]
    code, out = recommend(run, "--user", user, "--k", str(tiny.n_items), "--json", "--include-seen")
    assert code == 0, out
    assert held_out <= {item["item_id"] for item in json.loads(out)["items"]}


def test_cli_checks_k(run: Path, tiny: PreparedData) -> None:
    user = str(tiny.user_ids[0])
    for flag in ("-k", "--k"):
        code, out = recommend(run, "--user", user, flag, "-1")
        assert code == 2 and "k must be >= 0" in out and "Traceback" not in out, out
    code, out = recommend(run, "--user", user, "--k", "0", "--json")
    assert code == 0 and json.loads(out)["items"] == [], out
    code, out = recommend(run, "--user", user, "-k", "0")
    assert code == 0 and out.strip() == f"user {user} (jifr_na)", out
