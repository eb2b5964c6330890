"""The batch side: history, point-in-time features, training, evaluation, governance, registry."""
