"""Where Pub/Sub pushes job deliveries: ``POST /internal/jobs/units`` (every plan and
unit) and ``POST /internal/jobs/dead-letters`` (a piece that failed on every delivery).

Mounted only where the job queue is Pub/Sub. Only each route's push subscription may
call it: ``api.push_guard`` checks the credentials before the body is read, and bounds
the body; API keys and the rate limit do not apply. A 204 acks the message; a 503 has
Pub/Sub deliver it again with backoff, to this instance or another. Not in the public
OpenAPI document: docs/jobs.md describes them.
"""

from __future__ import annotations

import base64
import binascii

import structlog
from fastapi import APIRouter, Response
from pydantic import BaseModel, Field, ValidationError

from whisper_service.api.deps import JobsDep
from whisper_service.errors import ServiceError
from whisper_service.jobs.dispatch import Delivery, Retry

router = APIRouter(tags=["internal"], include_in_schema=False)
log = structlog.get_logger(__name__)

# The attribute Pub/Sub sets on a dead-lettered message: deliveries it took.
DEAD_LETTER_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"


class PushedMessage(BaseModel):
    """The message inside a push request."""

    data: str = ""
    attributes: dict[str, str] = Field(default_factory=dict)
    message_id: str | None = Field(None, alias="messageId")


class PushEnvelope(BaseModel):
    """A Pub/Sub push request's body."""

    message: PushedMessage
    subscription: str | None = None
    delivery_attempt: int | None = Field(None, alias="deliveryAttempt")

    def delivery(self) -> Delivery:
        """The job delivery the message carries; 400 if it carries none."""
        try:
            return Delivery.model_validate_json(base64.b64decode(self.message.data))
        except (binascii.Error, ValidationError) as exc:
            raise ServiceError(
                "the message is not a job delivery", code="invalid_delivery", status=400
            ) from exc


@router.post("/internal/jobs/units", status_code=204)
async def push_delivery(jobs: JobsDep, envelope: PushEnvelope) -> Response:
    """Do a plan or unit: 204 acks it, 503 has it delivered again."""
    delivery = envelope.delivery()
    try:
        await jobs.handle(delivery)
    except Retry as retry:
        raise ServiceError(
            f"the delivery was not done ({retry.reason}); deliver it again",
            code="job_delivery_retry",
            status=503,
            headers={"Retry-After": "10"},
        ) from retry
    return Response(status_code=204)


@router.post("/internal/jobs/dead-letters", status_code=204)
async def push_dead_letter(jobs: JobsDep, envelope: PushEnvelope) -> Response:
    """A piece failed on every delivery: fail its job (once per message), then ack."""
    try:
        delivery = envelope.delivery()
    except ServiceError:
        # Nothing to fail, and redelivering it would not change that: ack, but say so.
        log.error("job_dead_letter_unreadable", message_id=envelope.message.message_id)
        return Response(status_code=204)
    count = envelope.message.attributes.get(DEAD_LETTER_COUNT, "")
    if not count.isdigit():
        # Pub/Sub sets it on every message it dead-letters: this one it did not.
        raise ServiceError(
            f"not a dead-lettered message: the {DEAD_LETTER_COUNT} attribute is missing",
            code="invalid_delivery",
            status=400,
        )
    await jobs.dead_letter(delivery, int(count), envelope.message.message_id)
    return Response(status_code=204)
