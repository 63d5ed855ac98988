"""Reading the body of ``POST /v1/items``: a multipart form with the frames' image files, or JSON
with their precomputed features; either becomes one ``NewItemUpload``.

The body is read up to ``schemas.MAX_NEW_ITEM_BYTES`` (413 beyond, also when a
``Content-Length`` announces more), before anything is parsed. A form has the fields
``item_id``, ``title`` (optional), ``frame_id`` (optional, one per image) and ``image`` (one file
per frame, in order); another field is refused. Nothing here touches the run.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import FormData, Headers, UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

from jifr.items.add import NewItemUpload
from jifr.items.store import MAX_FRAMES, NewItemInvalid
from jifr.serve import schemas

FORM_FIELDS = ("item_id", "title", "frame_id", "image")


class RequestTooLarge(ValueError):
    """The request body is larger than the service takes (413)."""


class UnsupportedMediaType(ValueError):
    """The body is neither a multipart form nor JSON (415)."""


async def read_new_item(request: Request) -> NewItemUpload:
    """The new item a ``POST /v1/items`` request carries."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ("application/json", "multipart/form-data", "application/x-www-form-urlencoded"):
        kinds = "multipart/form-data (image files) or application/json (features)"
        raise UnsupportedMediaType(f"send the item as {kinds}, not {media or 'no type'!r}")
    body = await read_body(request, schemas.MAX_NEW_ITEM_BYTES)
    return from_json(body) if media == "application/json" else await from_form(request.headers, body)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused (RequestTooLarge) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"the request has {int(declared):,} bytes; at most {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"the request has more than {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def from_json(body: bytes) -> NewItemUpload:
    """A ``schemas.NewItemFeatures`` body; malformed JSON or fields are FastAPI's 422."""
    try:
        value = json.loads(body)  # accepts NaN and Infinity, which the item's checks then name
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": f"not JSON: {exc}"}]) from None
    try:
        item = schemas.NewItemFeatures.model_validate(value)
    except ValidationError as exc:
        errors = [error | {"loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None
    return NewItemUpload(item.item_id, item.title, tuple(item.frame_ids), features=item.features)


async def from_form(headers: Headers, body: bytes) -> NewItemUpload:
    """A form of ``FORM_FIELDS``: multipart, or URL-encoded (which cannot hold the image files,
    so it is refused for want of frames, with the fields checked first)."""

    async def replay() -> AsyncGenerator[bytes, None]:
        yield body

    multipart = headers.get("content-type", "").lower().startswith("multipart/")
    try:
        if multipart:
            form = await MultiPartParser(headers, replay(), max_files=MAX_FRAMES + 1, max_fields=MAX_FRAMES + 3).parse()
        else:
            form = await FormParser(headers, replay()).parse()
    except MultiPartException as exc:
        raise NewItemInvalid(f"malformed multipart form: {exc.message}") from None
    try:
        return await _upload(form)
    finally:
        await form.close()


async def _upload(form: FormData) -> NewItemUpload:
    unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
    if unknown:
        raise NewItemInvalid(f"unknown form field {unknown[0]!r}; the fields are {', '.join(FORM_FIELDS)}")
    repeated = [field for field in ("item_id", "title") if len(form.getlist(field)) > 1]
    if repeated:
        raise NewItemInvalid(f"the form field {repeated[0]!r} is given more than once")
    files = form.getlist("image")
    if not files:
        raise NewItemInvalid("a new item needs at least one frame: send its images as files in the field 'image'")
    if not all(isinstance(file, UploadFile) for file in files):
        raise NewItemInvalid("the field 'image' must hold files, not text")
    frame_ids = [_text(value, "frame_id") for value in form.getlist("frame_id")]
    return NewItemUpload(
        item_id=_text(form.get("item_id"), "item_id"),
        title=None if form.get("title") is None else _text(form.get("title"), "title"),
        frame_ids=tuple(frame_ids),
        images=tuple([await file.read() for file in files if isinstance(file, UploadFile)]),
    )


def _text(value: Any, field: str) -> str:
    if value is None:
        raise NewItemInvalid(f"the form field {field!r} is missing")
    if not isinstance(value, str):
        raise NewItemInvalid(f"the form field {field!r} must be text, not a file")
    return value
