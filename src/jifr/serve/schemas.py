"""The service's request and response types (they are its OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_K = 1000  # items per user in one response
MAX_BATCH_USERS = 100  # users in one POST /v1/recommendations
MAX_USER_MATCHES = 1000  # user ids in one GET /v1/users
MAX_NEW_ITEM_BYTES = 32 * 1024 * 1024  # the body of one POST /v1/items (413 beyond)

Fallback = Literal["none", "popular"]


class Frame(BaseModel):
    frame_id: str
    title: str | None = None
    image_url: str | None = Field(
        default=None, description="GET it for the image; null when the dataset has no image file."
    )


class ScoredFrame(Frame):
    score: float = Field(description="The model's key-frame score of this frame (higher is better).")


class RecommendedItem(BaseModel):
    rank: int = Field(ge=1)
    item_id: str
    title: str | None = None
    score: float = Field(description="The model's item score; for a popularity fallback, the training interactions.")
    key_frame: ScoredFrame | None = Field(
        default=None, description="The first of `frames`; null for models that do not rank frames."
    )
    frames: list[ScoredFrame] = Field(
        default_factory=list, description="All the item's frames in this user's order, best first."
    )
    mean_user_frames: list[ScoredFrame] = Field(
        default_factory=list, description="All the item's frames in the mean user's order (see /v1/info)."
    )
    new: bool = Field(
        default=False, description="Whether the item was added after training (POST /v1/items), scored from its frames."
    )


class UserRecommendations(BaseModel):
    user_id: str
    model: str
    fallback: Literal["popular"] | None = Field(
        default=None,
        description="'popular' when the user is unknown and the items are the most popular ones, "
        "with frames in the mean user's order; null for the user's own recommendations.",
    )
    exclude_seen: bool
    items: list[RecommendedItem]


class BatchRequest(BaseModel):
    users: list[str] = Field(min_length=1, max_length=MAX_BATCH_USERS, description="Raw user ids.")
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = True
    fallback: Fallback = "none"


class BatchRecommendations(BaseModel):
    model: str
    results: list[UserRecommendations] = Field(description="One entry per requested user, in request order.")


class ItemFrames(BaseModel):
    user_id: str
    item_id: str
    title: str | None = None
    model: str
    key_frame: ScoredFrame
    frames: list[ScoredFrame] = Field(description="The item's frames in this user's order, best first.")
    mean_user_frames: list[ScoredFrame] = Field(description="The item's frames in the mean user's order.")


class HistoryItem(BaseModel):
    item_id: str
    title: str | None = None
    frames: list[Frame] = Field(description="The item's frames in dataset order.")


class TrainingItems(BaseModel):
    user_id: str
    items: list[HistoryItem] = Field(description="The items of the user's training split, in item order.")


class UserMatches(BaseModel):
    prefix: str
    users: list[str] = Field(description="User ids starting with the prefix, in sorted order.")
    more: bool = Field(description="Whether more ids match than were returned.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class DataInfo(BaseModel):
    fingerprint: str
    n_users: int
    n_items: int
    n_frames: int
    n_interactions: dict[str, int]
    frames_with_images: int


class Info(BaseModel):
    model: str
    ranks_frames: bool
    config: dict[str, Any] = Field(description="model, train (the resolved configs) and seed of the run.")
    data: DataInfo
    jifr_version: str = Field(description="The serving jifr.")
    trained_with: str | None = Field(default=None, description="The jifr version that trained the run.")
    mean_user: str = Field(description="How the mean user's frame order is defined.")
    new_items: NewItemsInfo
    max_k: int = MAX_K
    max_batch_users: int = MAX_BATCH_USERS


class NewItemFeatures(BaseModel):
    """A new item with its frames' precomputed features (the JSON form of POST /v1/items)."""

    model_config = ConfigDict(extra="forbid")

    item_id: str
    title: str | None = None
    frame_ids: list[str] = Field(
        default_factory=list, description="One per frame; default ITEM-1, ITEM-2, ... (ids must be new)."
    )
    features: list[list[float]] = Field(
        description="One row per frame, as many values as the run's frame features (see /v1/info), all finite."
    )


NEW_ITEM_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["item_id", "image"],
    "properties": {
        "item_id": {"type": "string"},
        "title": {"type": "string"},
        "frame_id": {"type": "array", "items": {"type": "string"}, "description": "One per image, in order."},
        "image": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "The frames' images (PNG, JPEG, WebP, GIF or BMP), encoded with the run's encoder.",
        },
    },
}


class NewItemAdded(BaseModel):
    item_id: str
    title: str | None = None
    frames: list[Frame] = Field(description="The new item's frames, in the order they were given.")
    n_new_items: int = Field(description="New items the run now has.")


class NewItemsInfo(BaseModel):
    count: int = Field(description="Items added after training.")
    scoring: str | None = Field(description="What a new item's score is for this model; null when it cannot score one.")
    refusal: str | None = Field(default=None, description="Why this model cannot score new items, when it cannot.")
    image_encoder: str | None = Field(
        description="The encoder of the run's frame features, which encodes uploaded images; "
        "null: images are refused, send precomputed features."
    )
    max_frames: int
    max_request_bytes: int
    max_image_pixels: int


class ErrorBody(BaseModel):
    detail: str
