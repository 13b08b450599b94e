"""The outbox: pending deliveries sent, retried with backoff and recorded, on the
registry's event loop (asynchronous HTTP: nothing here blocks the loop for a request)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx

from serve_app.webhooks import sender
from serve_app.webhooks.addresses import own_networks
from serve_app.webhooks.config import WebhookConfig
from serve_app.webhooks.records import Attempt, Delivery, DeliveryState, DeliveryStore

logger = logging.getLogger(__name__)


class Outbox:
    """Sends every pending delivery of ``store`` until it is delivered or given up."""

    def __init__(self, store: DeliveryStore, config: WebhookConfig) -> None:
        self.store = store
        self._config = config
        self._own = own_networks(config)
        self._pending: dict[str, Delivery] = {d.delivery_id: d for d in store.pending()}
        self._sending: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0

    @property
    def config(self) -> WebhookConfig:
        return self._config

    @config.setter
    def config(self, config: WebhookConfig) -> None:
        self._config = config
        self._own = own_networks(config, nodes=True)

    def post(self, delivery: Delivery) -> None:
        """Send a delivery the store already holds (``DeliveryStore.fire`` wrote it)."""
        self._pending[delivery.delivery_id] = delivery
        self._wake.set()

    async def run(self) -> None:
        """Send what is due, sleep until the next is (or a new one comes); forever."""
        self._own = own_networks(self._config, nodes=True)
        async with sender.client() as http:
            try:
                while True:
                    now = time.time()
                    for delivery in list(self._pending.values()):
                        if len(self._sending) >= self._config.concurrency:
                            break
                        due = delivery.next_try_at or now
                        if delivery.delivery_id not in self._sending and due <= now:
                            self._start(http, delivery)
                    await self._sleep(now)
            finally:
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def _start(self, http: httpx.AsyncClient, delivery: Delivery) -> None:
        self._sending.add(delivery.delivery_id)
        task = asyncio.create_task(self._send(http, delivery), name="webhook-send")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sleep(self, now: float) -> None:
        waiting = [
            d.next_try_at or now
            for d in self._pending.values()
            if d.delivery_id not in self._sending
        ]
        timeout = max(0.0, min(waiting) - now) if waiting else None
        if len(self._sending) >= self._config.concurrency:
            timeout = None  # a finished send wakes the loop
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _send(self, http: httpx.AsyncClient, delivery: Delivery) -> None:
        config = self._config
        try:
            try:
                attempt = await sender.attempt(http, delivery, config, self._own)
                retry_at = time.time() + config.backoff_s(len(delivery.attempts) + 1)
                done = delivery.after(attempt, retry_at)
            except sender.Refused as exc:
                done = delivery.after(Attempt(time.time(), None, f"refused: {exc}", 0.0), None)
            try:
                self.store.save(done)
            except Exception:
                logger.exception("could not record webhook delivery %s", delivery.delivery_id)
            if done.state is DeliveryState.PENDING:
                self._pending[done.delivery_id] = done
            else:
                self._pending.pop(done.delivery_id, None)
                self.sent += done.state is DeliveryState.DELIVERED
                log = logger.info if done.state is DeliveryState.DELIVERED else logger.warning
                log(
                    "webhook %s for %s %s %s after %d attempts",
                    done.delivery_id,
                    done.kind,
                    done.target_id,
                    done.state,
                    len(done.attempts),
                )
        except Exception:
            logger.exception("webhook delivery %s failed unexpectedly", delivery.delivery_id)
        finally:
            self._sending.discard(delivery.delivery_id)
            self._wake.set()

    def pending_count(self) -> int:
        return len(self._pending)
