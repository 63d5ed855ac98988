"""The HTTP service: ``create_app(run_dir)`` builds a FastAPI app whose lifespan loads the run.

Nothing is loaded at import time. Handlers are thin: each calls one method of ``Service``,
whose answers are the pydantic types of ``jifr.serve.schemas``. An unknown user, item or frame
is a 404 with ``{"detail": "..."}``; an invalid parameter is FastAPI's 422 naming it. A new item
that cannot be added (``POST /v1/items``) is a 422 (malformed), 409 (conflicts with the run: a
taken id, a model that cannot score new items, images where the run's encoder is unknown), 413
(too large) or 415 (neither a form nor JSON), each with ``{"detail": "..."}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

import jifr
from jifr.items.store import NewItemConflict, NewItemInvalid
from jifr.serve import schemas
from jifr.serve.dependencies import ServiceDep
from jifr.serve.page import STATIC_DIR, page_router
from jifr.serve.service import NotFoundError, Service
from jifr.serve.uploads import RequestTooLarge, UnsupportedMediaType, read_new_item

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": schemas.ErrorBody, "description": "Unknown user, item or frame"}
}
NEW_ITEM_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {
        "model": schemas.ErrorBody,
        "description": "A taken id, a model without a content side, or images where the run's encoder is unknown",
    },
    413: {"model": schemas.ErrorBody, "description": "A body over the limit (see /v1/info)"},
    415: {"model": schemas.ErrorBody, "description": "Neither multipart/form-data nor application/json"},
    422: {"description": "A malformed item: ids, frames, features or an image that does not decode"},
}
NEW_ITEM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": schemas.NEW_ITEM_FORM},
            "application/json": {"schema": schemas.NewItemFeatures.model_json_schema()},
        },
    }
}
ERROR_STATUS: dict[type[Exception], int] = {
    NotFoundError: 404,
    NewItemInvalid: 422,
    NewItemConflict: 409,
    RequestTooLarge: 413,
    UnsupportedMediaType: 415,
}


K = Annotated[int, Query(ge=1, le=schemas.MAX_K, description="Number of items.")]
ExcludeSeen = Annotated[bool, Query(description="Leave out items the user interacted with in any split.")]
FallbackQuery = Annotated[
    schemas.Fallback, Query(description="'popular': an unknown user gets the most popular items (marked).")
]

api = APIRouter(prefix="/v1", responses=NOT_FOUND)


@api.get("/health")
async def health() -> schemas.Health:  # on the event loop: busy worker threads do not delay it
    return schemas.Health()


@api.get("/info")
def info(service: ServiceDep) -> schemas.Info:
    return service.info()


@api.get("/users")
def users(
    service: ServiceDep,
    prefix: str = "",
    limit: Annotated[int, Query(ge=1, le=schemas.MAX_USER_MATCHES)] = 20,
) -> schemas.UserMatches:
    """User ids starting with ``prefix`` (for a searchable user picker)."""
    return service.search_users(prefix, limit)


@api.get("/users/{user_id}/recommendations")
def recommendations(
    user_id: str, service: ServiceDep, k: K = 10, exclude_seen: ExcludeSeen = True, fallback: FallbackQuery = "none"
) -> schemas.UserRecommendations:
    """Top-k items of one user, each with its personalised key frame and all its frames."""
    return service.recommend([user_id], k, exclude_seen, fallback)[0]


@api.post("/recommendations")
def batch_recommendations(request: schemas.BatchRequest, service: ServiceDep) -> schemas.BatchRecommendations:
    """Top-k items of many users, scored together."""
    results = service.recommend(request.users, request.k, request.exclude_seen, request.fallback)
    return schemas.BatchRecommendations(model=service.model.model_name, results=results)


@api.get("/users/{user_id}/items/{item_id}/frames")
def item_frames(user_id: str, item_id: str, service: ServiceDep) -> schemas.ItemFrames:
    """One item's frames ranked for one user, beside the mean user's order."""
    return service.item_frames(user_id, item_id)


@api.get("/users/{user_id}/training-items")
def training_items(user_id: str, service: ServiceDep) -> schemas.TrainingItems:
    """The user's training items with their frames."""
    return service.training_items(user_id)


@api.post("/items", status_code=201, responses=NEW_ITEM_ERRORS, openapi_extra=NEW_ITEM_BODY)
async def add_item(request: Request, service: ServiceDep) -> schemas.NewItemAdded:
    """Add an item that came after training, with its frames' images (multipart/form-data: item_id,
    title, frame_id per image, image files) or their precomputed features (JSON). It is scored from
    its frames, ranked with the catalogue from the next request on, and kept in the run."""
    upload = await read_new_item(request)
    return await run_in_threadpool(service.add_item, upload)


@api.get("/frames/{frame_id:path}/image", response_class=FileResponse)
def frame_image(frame_id: str, service: ServiceDep) -> FileResponse:
    """The frame's image file (found by frame id in the dataset's frame table)."""
    return FileResponse(service.image(frame_id), headers={"Cache-Control": "max-age=3600"})


def error_response(request: Request, exc: Exception) -> JSONResponse:
    status = next(code for kind, code in ERROR_STATUS.items() if isinstance(exc, kind))
    return JSONResponse(status_code=status, content={"detail": str(exc)})


def create_app(run_dir: str | Path, service: Service | None = None) -> FastAPI:
    """The service of the run at ``run_dir``, loaded when the app starts (its lifespan); pass
    ``service`` to use one already loaded (the command line loads it first, so that a damaged
    run is one error message rather than a server failing to start)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.service = service if service is not None else Service.load(run_dir)
        yield

    app = FastAPI(
        title="jifr",
        version=jifr.__version__,
        summary="Items and personalised key frames from one trained run.",
        lifespan=lifespan,
    )
    app.include_router(api)
    app.include_router(page_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for kind in ERROR_STATUS:
        app.add_exception_handler(kind, error_response)
    return app
