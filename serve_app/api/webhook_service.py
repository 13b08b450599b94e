"""Webhooks at the API: a ``callback_url`` checked before anything starts, subscribed once
the job or batch is accepted, and the deliveries' attempts as ``GET .../deliveries`` shows.
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool

from serve_app.api.deps import Services
from serve_app.registry.jobs import JobSnapshot, Viewer
from serve_app.schemas.tools import BatchEntry
from serve_app.schemas.webhooks import AttemptResponse, DeliveriesResponse, DeliveryResponse
from serve_app.webhooks.addresses import (
    CallbackRefusedError,
    checked_address,
    own_networks,
    parse_target,
)
from serve_app.webhooks.records import BatchMember, Delivery, Subscription, TargetKind


def delivery_body(delivery: Delivery) -> DeliveryResponse:
    """A delivery as ``GET .../deliveries`` shows it."""
    return DeliveryResponse(
        delivery_id=delivery.delivery_id,
        event=delivery.event,
        url=delivery.url,
        run=delivery.run,
        state=str(delivery.state),
        attempts=[
            AttemptResponse(
                at=_time(a.at), status_code=a.status_code, error=a.error, seconds=a.seconds
            )
            for a in delivery.attempts
        ],
        next_try_at=_time(delivery.next_try_at) if delivery.next_try_at else None,
        give_up_at=_time(delivery.give_up_at),
        created_at=_time(delivery.created_at),
    )


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def check_callback(services: Services, viewer: Viewer, url: str | None) -> None:
    """422 ``callback_url_refused`` for a URL the service will not send to (scheme, host
    and every address it resolves to), or when no signing secret is configured for the
    caller; checked before the job or batch starts. (Each attempt checks it again.)"""
    if url is None:
        return
    config = services.config.webhooks
    if not config.secret_of(viewer.key_id):
        who = "your API key" if viewer.key_id else "this service"
        raise CallbackRefusedError(
            f"webhooks are not configured for {who}: no signing secret (webhooks.secret, "
            "webhooks.key_secrets)"
        )
    target = parse_target(url, config)
    own = await run_in_threadpool(own_networks, config)
    await checked_address(target, config, own)


async def subscribe_job(
    services: Services, viewer: Viewer, job: JobSnapshot, url: str | None
) -> None:
    """POST the end of ``job``'s current run to ``url``."""
    if url is None:
        return
    subscription = Subscription(
        kind=TargetKind.JOB, target_id=job.job_id, url=url, key_id=viewer.key_id, run=job.run
    )
    await services.registry.subscribe(subscription)


async def subscribe_batch(
    services: Services, viewer: Viewer, batch_id: str, entries: list[BatchEntry], url: str | None
) -> None:
    """POST the end of the batch (no job of it queued or running) to ``url``."""
    if url is None:
        return
    members = tuple(BatchMember(index=e.index, job_id=e.job_id, error=e.error) for e in entries)
    subscription = Subscription(
        kind=TargetKind.BATCH, target_id=batch_id, url=url, key_id=viewer.key_id, members=members
    )
    await services.registry.subscribe(subscription)


async def deliveries_of(services: Services, kind: TargetKind, target_id: str) -> DeliveriesResponse:
    found = await services.registry.deliveries(kind, target_id)
    return DeliveriesResponse(target_id=target_id, deliveries=[delivery_body(d) for d in found])
