"""The web page at ``/``: server-rendered (Jinja2) with plain JavaScript that calls the API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from jifr.serve.dependencies import ServiceDep

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
FIRST_USERS = 50  # user ids listed in the page itself; typing fetches more

templates = Jinja2Templates(directory=HERE / "templates")
page_router = APIRouter(include_in_schema=False)


@page_router.get("/", response_class=HTMLResponse)
def page(request: Request, service: ServiceDep) -> HTMLResponse:
    context = {"info": service.info(), "users": service.search_users("", FIRST_USERS).users}
    return templates.TemplateResponse(request, "index.html", context)
