"""Bodies of the webhook routes: a job's or batch's deliveries and their attempts."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class AttemptResponse(BaseModel):
    """One try of a delivery."""

    at: datetime
    status_code: int | None = Field(description="the receiver's HTTP status; null: no answer")
    error: str | None = Field(description="what went wrong without an answer (timeout, refused)")
    seconds: float


class DeliveryResponse(BaseModel):
    """One webhook delivery: its final status POSTed to ``url`` until a 2xx."""

    delivery_id: str = Field(description="the Orfeas-Delivery header of every attempt")
    event: str = Field(description="job.completed, job.failed, job.cancelled, batch.*")
    url: str
    run: int = Field(description="the job's run it reports (0 for a batch)")
    state: str = Field(description="pending (retried), delivered (a 2xx), failed (given up)")
    attempts: list[AttemptResponse]
    next_try_at: datetime | None = Field(description="when the next attempt is due")
    give_up_at: datetime
    created_at: datetime


class DeliveriesResponse(BaseModel):
    """The webhook deliveries of a job or batch, oldest first."""

    target_id: str
    deliveries: list[DeliveryResponse]
