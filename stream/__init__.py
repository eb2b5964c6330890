"""The online side, one subpackage per stage of the data flow:

    edge        raw bytes -> a transaction or a dead letter; card numbers tokenised
    features    the one feature definition, its kernels and encodings; memory and Redis stores
    scoring     policy, batch scoring, the model runtime (registry, compiled trees, reason codes)
    feedback    analyst labels: building, checking and publishing `feedback` records
    worker      the Faust app, the batch handler, durable output, metrics, logs
    monitoring  consumer lag, live model quality, drift

`stream.kafka_io` holds the thin confluent-kafka wrappers every stage uses (each client built
from the settings' one `KafkaConnection`), `stream.redis_io` the Redis client of the settings,
and `stream.kafka_acl` the Kafka ACLs of each role. Imports go one
way: worker and monitoring use the stages below them; edge and features use nothing above.
"""
