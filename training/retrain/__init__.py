"""`fraud retrain`: analyst labels and chargebacks folded back into a challenger.

`labelled_set` joins `feedback` to the feature vectors logged in `decisions`; `windows` (pure)
checks, cuts and combines it with the history and trains; `lineage` registers the challenger
with where its data came from; `run` does all of it behind the promotion gates.
"""

from training.retrain.labelled_set import AssemblyReport, assemble_labelled_set, load_labelled_set
from training.retrain.lineage import retraining_card_section
from training.retrain.run import RetrainOptions, RetrainResult, run_retrain
from training.retrain.windows import (
    Minimums,
    RetrainRefusedError,
    check_labelled_set,
    combine_windows,
    compare_on_window,
    feedback_rows,
    labelled_set_digest,
    split_recent,
    train_challenger,
)

__all__ = [
    "AssemblyReport",
    "Minimums",
    "RetrainOptions",
    "RetrainRefusedError",
    "RetrainResult",
    "assemble_labelled_set",
    "check_labelled_set",
    "combine_windows",
    "compare_on_window",
    "feedback_rows",
    "labelled_set_digest",
    "load_labelled_set",
    "retraining_card_section",
    "run_retrain",
    "split_recent",
    "train_challenger",
]
