"""The batch side, one subpackage per step of a model's life:

    data        history files, their validation, the time split, point-in-time replay
    model       estimators, training on a split, decision thresholds
    evaluation  metrics, fairness audit, feature importance, plots, drift references
    governance  MLflow tracking, the registry's write side, promotion gates, the model card
    retrain     feedback folded back in: the labelled set, windows, lineage, the run

`workflow` chains data -> model -> evaluation for `fraud train` and `fraud backtest`; `results`
writes JSON that is valid everywhere. Training scores and explains with `stream.scoring` and
builds features with `stream.features`: the stream's own code, which is the parity guarantee.
"""
