"""One consumer-group member in its own process, driven by the group tests (see group_util.py).

    python3 group_member.py --client confluent|kafka-python --bootstrap B --group G --topics T[,T2]
        [--assignor range|roundrobin|cooperative-sticky] [--instance-id ID]
        [--session-timeout-ms N] [--heartbeat-ms N] [--max-poll-ms N]
        [--auto-commit-ms N] [--commit-below N] [--conf key=value ...]

It subscribes to the topics and prints one JSON object per line on stdout, flushed at once:

    {"ev": "ready"}                              subscribed
    {"ev": "assign", "parts": [0, 2]}            partitions added (eager: the whole assignment)
    {"ev": "revoke", "parts": [0]}               partitions revoked
    {"ev": "lost", "parts": [0]}                 partitions lost
    {"ev": "member", "id": "...", "gen": 3}      member id (and generation where the client says)
    {"ev": "rec", "p": 0, "o": 17, "v": "..."}   a record, after it was processed
    {"ev": "commit", "p": 0, "o": 18}            a synchronous commit of offset 18 succeeded
    {"ev": "error", "msg": "..."}                an error the client reported
    {"ev": "closed"}                             close() returned

`--commit-below N` commits (synchronously, after processing) every record whose offset is below N;
-1 commits every record. Lines on stdin: `close` closes the consumer (LeaveGroup for dynamic
members) and exits; `hold` stops calling poll (the process keeps running). EOF on stdin = close.
Every event also has "t", time.time() when it happened.
"""

from __future__ import annotations

import sys
import time

from member_io import Commands, emit, member_parser


def should_commit(args, offset: int) -> bool:
    return args.commit_below == -1 or (args.commit_below is not None and offset < args.commit_below)


def run_confluent(args, cmds: Commands) -> None:
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    conf = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "enable.auto.commit": args.auto_commit_ms is not None,
        "fetch.wait.max.ms": 100,
        "socket.timeout.ms": 20000,
    }
    if args.auto_commit_ms is not None:
        conf["auto.commit.interval.ms"] = args.auto_commit_ms
    if args.assignor:
        conf["partition.assignment.strategy"] = args.assignor
    if args.instance_id:
        conf["group.instance.id"] = args.instance_id
    if args.session_timeout_ms:
        conf["session.timeout.ms"] = args.session_timeout_ms
    if args.heartbeat_ms:
        conf["heartbeat.interval.ms"] = args.heartbeat_ms
    if args.max_poll_ms:
        conf["max.poll.interval.ms"] = args.max_poll_ms
    for kv in args.conf:
        k, v = kv.split("=", 1)
        conf[k] = v
    c = Consumer(conf, error_cb=lambda e: emit("error", msg=str(e), code=e.code()))

    def on_assign(_c, parts):
        emit("assign", parts=sorted(p.partition for p in parts))

    def on_revoke(_c, parts):
        emit("revoke", parts=sorted(p.partition for p in parts))

    def on_lost(_c, parts):
        emit("lost", parts=sorted(p.partition for p in parts))

    c.subscribe(args.topics, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    emit("ready")
    member_id = None
    while not cmds.close.is_set():
        if cmds.hold.is_set():
            time.sleep(0.05)
            continue
        msg = c.poll(0.1)
        mid = c.memberid()
        if mid and mid != member_id:
            member_id = mid
            emit("member", id=mid, gen=None)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                emit("error", msg=str(msg.error()), code=msg.error().code())
            continue
        value = msg.value().decode() if msg.value() is not None else None
        emit("rec", p=msg.partition(), o=msg.offset(), v=value)
        if should_commit(args, msg.offset()):
            try:
                c.commit(offsets=[TopicPartition(msg.topic(), msg.partition(), msg.offset() + 1)],
                         asynchronous=False)
                emit("commit", p=msg.partition(), o=msg.offset() + 1)
            except Exception as exc:  # noqa: BLE001 - reported to the test
                emit("error", msg=f"commit failed: {exc!r}", p=msg.partition(),
                     o=msg.offset() + 1)
    c.close()
    emit("closed")


def run_kafka_python(args, cmds: Commands) -> None:
    from kafka import ConsumerRebalanceListener, KafkaConsumer
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.structs import OffsetAndMetadata

    assignors = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor,
                 "cooperative-sticky": CooperativeStickyAssignor}
    conf = dict(bootstrap_servers=args.bootstrap, group_id=args.group,
                auto_offset_reset="earliest", enable_auto_commit=args.auto_commit_ms is not None,
                fetch_max_wait_ms=100, request_timeout_ms=30000)
    if args.auto_commit_ms is not None:
        conf["auto_commit_interval_ms"] = args.auto_commit_ms
    if args.assignor:
        conf["partition_assignment_strategy"] = [assignors[args.assignor]]
    if args.instance_id:
        conf["group_instance_id"] = args.instance_id
    if args.session_timeout_ms:
        conf["session_timeout_ms"] = args.session_timeout_ms
    if args.heartbeat_ms:
        conf["heartbeat_interval_ms"] = args.heartbeat_ms
    if args.max_poll_ms:
        conf["max_poll_interval_ms"] = args.max_poll_ms
    for kv in args.conf:
        k, v = kv.split("=", 1)
        conf[k] = int(v) if v.lstrip("-").isdigit() else v
    import logging
    import os
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kafka-python's group coordinator logs every join/sync/heartbeat step at INFO/DEBUG.
    logging.getLogger("kafka.coordinator").setLevel(
        logging.DEBUG if os.environ.get("GROUP_MEMBER_DEBUG") else logging.INFO)
    c = KafkaConsumer(**conf)

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit("revoke", parts=sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned):
            emit("assign", parts=sorted(tp.partition for tp in assigned))

        def on_partitions_lost(self, lost):
            emit("lost", parts=sorted(tp.partition for tp in lost))

    # Work around a kafka-python 3.0.12 race (a client bug, not the broker's): a leader that
    # joins before it has the topic's metadata assigns nothing, rejoins because its metadata
    # snapshot changed, and if a poll() times out while that JoinGroup/SyncGroup is in flight the
    # next poll() sees need_rejoin() False and never consumes the finished join: no assignment, no
    # heartbeats, evicted after session.timeout.ms. Loading the metadata first avoids the
    # snapshot-triggered rejoin; a longer poll timeout makes the timed-out join rarer.
    for topic in args.topics:
        deadline = time.time() + 30
        while not c.partitions_for_topic(topic) and time.time() < deadline:
            time.sleep(0.1)
    c.subscribe(args.topics, listener=Listener())
    # The leader keeps the metadata snapshot it assigned with and rejoins when a later metadata
    # response differs from it. The coordinator takes its first snapshot only from a response
    # that arrives after subscribe(): without one before the first poll(), the leader may assign
    # from an empty snapshot and start a second rebalance right after the first.
    update = c._client.cluster.request_update()  # noqa: SLF001 - no public way to await metadata
    deadline = time.time() + 30
    while not update.is_done and time.time() < deadline:
        time.sleep(0.02)  # the client's I/O thread sends the request and completes the future
    emit("ready")
    last = None
    while not cmds.close.is_set():
        if cmds.hold.is_set():
            time.sleep(0.05)
            continue
        try:
            batches = c.poll(timeout_ms=500)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            emit("error", msg=repr(exc))
            time.sleep(0.1)
            continue
        gen = c._coordinator._generation  # noqa: SLF001 - no public accessor in kafka-python
        cur = (gen.member_id, gen.generation_id)
        if gen.member_id and cur != last:
            last = cur
            emit("member", id=gen.member_id, gen=gen.generation_id)
        for tp, msgs in batches.items():
            for m in msgs:
                value = m.value.decode() if m.value is not None else None
                emit("rec", p=m.partition, o=m.offset, v=value)
                if should_commit(args, m.offset):
                    try:
                        c.commit({tp: OffsetAndMetadata(m.offset + 1, "", -1)})
                        emit("commit", p=m.partition, o=m.offset + 1)
                    except Exception as exc:  # noqa: BLE001 - reported to the test
                        emit("error", msg=f"commit failed: {exc!r}")
    c.close()
    emit("closed")


def main() -> None:
    ap = member_parser()
    ap.add_argument("--client", choices=["confluent", "kafka-python"], default="confluent")
    ap.add_argument("--assignor")
    ap.add_argument("--instance-id")
    ap.add_argument("--session-timeout-ms", type=int)
    ap.add_argument("--heartbeat-ms", type=int)
    ap.add_argument("--max-poll-ms", type=int)
    ap.add_argument("--auto-commit-ms", type=int)
    ap.add_argument("--commit-below", type=int)
    args = ap.parse_args()
    cmds = Commands()
    if args.client == "confluent":
        run_confluent(args, cmds)
    else:
        run_kafka_python(args, cmds)


if __name__ == "__main__":
    main()
