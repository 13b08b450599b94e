"""Files made from a model on first request and kept: its other formats and its previews,
each made once per replica at a time however many ask."""

from __future__ import annotations

import asyncio
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from serve_app.api.deps import Services
from serve_app.contracts.params import OutputFormat
from serve_app.errors import ModelUnavailableError, WorkTimeoutError
from serve_app.meshtools.variants import PreviewOrder


async def export_file(services: Services, key: str, format: OutputFormat) -> Path:
    """The stored file of the mesh ``key`` as ``format``, derived on first request."""
    path = services.store.export_path(key, format)
    if path.is_file():
        return path
    lock_name = f"{key}.{format}"
    try:
        async with services.conversion_lock(lock_name):
            return await run_in_threadpool(services.store.derive_format, key, format)
    finally:  # a failed or abandoned conversion must not leave its lock behind
        services.release_conversion_lock(lock_name)


async def preview_file(services: Services, order: PreviewOrder) -> Path:
    """The stored PNG of ``order``, rendered by the MeshTools deployment on first request."""
    view = order.view()
    path = services.store.preview_path(order.mesh_key, view)
    if path.is_file():
        return path
    if services.previews is None:
        raise ModelUnavailableError("previews need the MeshTools deployment", feature="preview")
    timeout_s = services.config.mesh_tools.timeout_s
    lock_name = f"preview.{order.mesh_key}.{view}"
    try:
        async with services.conversion_lock(lock_name):
            if not path.is_file():
                await asyncio.wait_for(services.previews.render(order), timeout_s)
    except TimeoutError:
        raise WorkTimeoutError(
            f"the preview was not rendered within {timeout_s:g} s; retry later",
            retry_after_s=max(1, round(timeout_s / 4)),
        ) from None
    finally:  # a failed or abandoned render must not leave its lock behind
        services.release_conversion_lock(lock_name)
    return path
