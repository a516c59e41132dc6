"""What each kind of broker changes in how we use it: one frozen `Quirks` per `BROKER_KIND`.

The embedded broker (Tansu) differs from Apache Kafka in ways that forced workarounds; on Kafka some
of them are needless or worse. Everything that depends on the kind reads it from here, and
docs/operations.md ("Broker kinds") lists what each kind changes and the workarounds kept on both.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import BrokerKind


@dataclass(frozen=True)
class Quirks:
    """How the publisher and the worker use one kind of broker."""

    kind: BrokerKind
    idempotent_producer: bool
    """The publisher's `enable_idempotence`. Off on Tansu: its S3 store counts an idempotent
    producer's sequence number before it stores the batch, so a retry after a restart there is
    answered "duplicate" and the batch is lost (broker/produce.py)."""
    fetch_wait_ms: int
    """The worker consumer's fetch wait. Tansu holds a fetch until its wait runs out even when data
    has arrived, so each hop costs the whole wait; Kafka answers as soon as data is there."""
    read_changelogs_to_end: bool
    """After an assignment the Restorer reads each changelog past where Faust's recovery stopped:
    Tansu under-reports end offsets, so Faust stops short (stream/recovery.py)."""
    recovery_consistency_check: bool
    """Faust's check that a changelog offset it read is not past the partition's end, which fails
    on Tansu's under-reported ends."""


TANSU = Quirks(
    "tansu",
    idempotent_producer=False,
    fetch_wait_ms=10,
    read_changelogs_to_end=True,
    recovery_consistency_check=False,
)
KAFKA = Quirks(
    "kafka",
    idempotent_producer=True,
    fetch_wait_ms=500,  # Kafka's own default fetch.max.wait.ms
    read_changelogs_to_end=False,
    recovery_consistency_check=True,
)
QUIRKS: dict[BrokerKind, Quirks] = {"tansu": TANSU, "kafka": KAFKA}
