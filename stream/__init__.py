"""The online side: Kafka clients, feature aggregates, scoring, the Faust worker."""
