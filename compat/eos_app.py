"""A consume-transform-produce application with exactly-once processing, as users write it
with confluent-kafka: read a batch from the input topic, write one output record per input
record in a transaction, commit the input offsets inside the same transaction with
send_offsets_to_transaction, commit. On any error it exits, and whoever runs it starts it again
(the new instance fences the old producer, aborts what it left open and goes on from the
group's committed offsets).

    python eos_app.py BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID

Prints `committed N` after each transaction (N: input records it covered).
"""

from __future__ import annotations

import sys

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

BATCH = 20


def next_offsets(messages) -> list[TopicPartition]:
    """Where the group goes on after `messages`: one past the last of each partition."""
    last: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic(), m.partition())
        last[key] = max(last.get(key, -1), m.offset())
    return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]


def main(bootstrap: str, input_topic: str, output_topic: str, group: str,
         transactional_id: str) -> int:
    # With one broker, its restart leaves no broker up; librdkafka then forgets the brokers
    # it knew and bootstraps again, and requests waiting for a forgotten coordinator (a
    # send_offsets_to_transaction under way) wait forever (librdkafka issues 5456, 5511).
    # The brokers are kept instead.
    recovery = {"metadata.recovery.strategy": "none"}
    consumer = Consumer({
        **recovery,
        "bootstrap.servers": bootstrap,
        "group.id": group,
        # A restarted instance takes its place in the group at once.
        "group.instance.id": f"{transactional_id}-member",
        "session.timeout.ms": 6000,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    })
    producer = Producer({
        **recovery,
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": 10000,
    })
    producer.init_transactions(60)
    consumer.subscribe([input_topic])
    print("started", flush=True)
    while True:
        messages = [m for m in consumer.consume(BATCH, timeout=1.0)]
        for m in messages:
            if m.error() is not None and m.error().code() != KafkaError._PARTITION_EOF:
                raise SystemExit(f"consume failed: {m.error()}")
        messages = [m for m in messages if m.error() is None]
        if not messages:
            continue
        producer.begin_transaction()
        for m in messages:
            value = m.value().decode().replace("in-", "out-", 1)
            producer.produce(output_topic, value=value.encode(), key=m.key())
        producer.send_offsets_to_transaction(next_offsets(messages),
                                             consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(60)
        print(f"committed {len(messages)}", flush=True)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
