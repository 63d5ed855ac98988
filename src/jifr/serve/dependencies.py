"""The loaded service, as a FastAPI dependency of the handlers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from jifr.serve.service import Service


async def get_service(request: Request) -> Service:
    """The service the app's lifespan loaded. Async, as it never blocks: FastAPI would run a
    plain function in its thread pool, one thread hand-off more for every request."""
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]
