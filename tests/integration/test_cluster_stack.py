"""The clustered stack of ops/cluster.sh (`make services CLUSTER=1`), on private ports: three
Kafka nodes whose topics get three replicas and need two in sync to take a write, a Redis Cluster
of three primaries each with a replica on another node, and `env` pointing the project at it."""

from __future__ import annotations

import time

import pytest

from bench.chaos import ClusterStack
from stream.kafka_io import ensure_topics, make_admin, make_producer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_topics_are_replicated_three_times_and_need_two_in_sync(
    cluster: ClusterStack, unique_name
) -> None:
    from confluent_kafka.admin import ConfigResource

    topic = unique_name("replicated")
    ensure_topics(cluster.connection, [topic], partitions=3)
    cluster.wait_in_sync([topic], timeout_s=60)
    admin = make_admin(cluster.connection)
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions.values()
    assert sorted(len(p.replicas) for p in partitions) == [3, 3, 3]
    assert {p.leader for p in partitions} <= {1, 2, 3}
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result()
    assert configs["min.insync.replicas"].value == "2"

    producer = make_producer(cluster.connection)
    for i in range(30):
        producer.produce(topic, b"v%d" % i, b"k%d" % i)
    assert producer.flush(30) == 0
    assert sum(cluster.partition_leaders([topic]).values()) == 3


def test_redis_cluster_has_three_primaries_each_with_a_replica(cluster: ClusterStack) -> None:
    import redis

    roles = cluster.redis_roles()
    assert sorted(roles.values()) == ["master"] * 3 + ["slave"] * 3
    with redis.Redis(port=cluster.ports.redis) as node:
        info = node.cluster("info")
        nodes = node.cluster("nodes")
    assert info["cluster_state"] == "ok" and info["cluster_slots_ok"] == "16384"
    primaries = {data["node_id"] for data in nodes.values() if "master" in data["flags"]}
    replicated = {data["master_id"] for data in nodes.values() if "slave" in data["flags"]}
    assert len(primaries) == 3 and replicated == primaries


def test_env_points_the_project_at_the_cluster(cluster: ClusterStack) -> None:
    assert cluster.exports().splitlines() == [
        f"export KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap}",
        f"export REDIS_URL={cluster.redis_url}",
        "export FRAUD_REDIS_CLUSTER=1",
    ]


def test_a_killed_redis_primary_is_replaced_by_its_replica_and_rejoins(
    cluster: ClusterStack,
) -> None:
    """The chaos suite's Redis fault on the cluster: kill -9 the primary holding the most keys,
    its replica takes over every slot, the old primary comes back as a replica."""
    from redis.cluster import ClusterNode, RedisCluster

    from bench.chaos.redis_target import ClusterRedis

    nodes = [ClusterNode("127.0.0.1", port) for port in cluster.ports.redis_ports]
    client = RedisCluster(startup_nodes=nodes)
    for i in range(300):
        client.set(f"{{card:{i}}}:probe", i)
    # Replication is asynchronous: without this pause the newest writes could die with the
    # primary (what WAIT would guard against), which is not what this test is about.
    time.sleep(1)
    target = ClusterRedis(cluster)
    killed = target.kill_primary()
    assert target.wait_serving() < 60
    target.restore()
    # The restarted node starts as a primary until gossip tells it a newer epoch owns its
    # slots; then it turns into a replica (seconds on a loaded machine).
    deadline = time.monotonic() + 60
    roles = cluster.redis_roles()
    while sorted(roles.values()) != ["master"] * 3 + ["slave"] * 3 and time.monotonic() < deadline:
        time.sleep(0.5)
        roles = cluster.redis_roles()
    assert sorted(roles.values()) == ["master"] * 3 + ["slave"] * 3
    assert roles[int(killed.rsplit(":", 1)[1])] == "slave"
    client = RedisCluster(startup_nodes=nodes)
    assert [int(client.get(f"{{card:{i}}}:probe")) for i in range(300)] == list(range(300))
    client.delete(*[f"{{card:{i}}}:probe" for i in range(300)])
