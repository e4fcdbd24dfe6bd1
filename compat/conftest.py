"""pytest fixtures for the real-client compatibility suite.

Every test gets its own broker on a free port with a fresh data directory:

    def test_x(broker):                   # default settings
        ... broker.bootstrap ...

    def test_y(start_broker):             # extra `--set name=value` broker properties
        b = start_broker({"auto.create.topics.enable": "false"}, num_partitions=3)

`start_broker` takes a dict of Kafka property names and/or keyword arguments in which `_` stands
for `.`. Brokers are always SIGKILLed at teardown; when a test fails, the broker logs are attached
to its report.
"""

from __future__ import annotations

import pytest

from partita_compat import Broker, broker_binary, free_port, setting_names, unique_name

BROKERS_ATTR = "_partita_brokers"
# A test may attach more logs to its failure report: request.node._partita_extra_logs is a list of
# (title, callable returning text) pairs (see the `extra_logs` fixture).
EXTRA_LOGS_ATTR = "_partita_extra_logs"


@pytest.fixture
def start_broker(request, tmp_path):
    brokers: list = []
    setattr(request.node, BROKERS_ATTR, brokers)

    def start(settings=None, env=None, port=None, prefix=None, **kwargs) -> Broker:
        merged = dict(settings or {})
        merged.update(setting_names(kwargs))
        n = len(brokers)
        b = Broker(binary=broker_binary(), port=port or free_port(), data_dir=tmp_path / f"data{n}",
                   log_path=tmp_path / f"broker{n}.log", settings=merged, env=env, prefix=prefix)
        brokers.append(b)
        b.start()
        return b

    yield start
    for b in brokers:
        b.kill()


@pytest.fixture
def cluster(request, tmp_path):
    """Cluster mode on real engines: a private PostgreSQL and S3 server for the test, and
    `cluster.start_broker(node_id, ...)` for each broker (see cluster_engines.py)."""
    from cluster_engines import Cluster
    brokers: list = []
    setattr(request.node, BROKERS_ATTR, brokers)
    c = Cluster(tmp_path, brokers)
    yield c
    c.close()


@pytest.fixture
def broker(start_broker) -> Broker:
    return start_broker()


@pytest.fixture
def extra_logs(request) -> list:
    """Append (title, callable returning text) pairs: shown in the report when the test fails."""
    logs: list = []
    setattr(request.node, EXTRA_LOGS_ATTR, logs)
    return logs


@pytest.fixture
def topic_name() -> str:
    return unique_name("t")


@pytest.fixture
def group_name() -> str:
    return unique_name("g")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for b in getattr(item, BROKERS_ATTR, []):
            report.sections.append(
                (f"broker log ({b.bootstrap}, {b.log_path})", b.log_tail()))
        for title, text in getattr(item, EXTRA_LOGS_ATTR, []):
            try:
                report.sections.append((title, text()))
            except Exception as exc:  # noqa: BLE001 - a missing log must not hide the failure
                report.sections.append((title, f"(could not read: {exc!r})"))
