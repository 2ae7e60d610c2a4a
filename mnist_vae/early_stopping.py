"""Early stopping on the validation slice (--early-stopping PATIENCE with --validation N): training stops once the
validation loss has not improved for PATIENCE epochs, and the run's model, evaluation and figures are those of
the best epoch. Everything it decides is a function of the history (validation_loss per epoch), which the
checkpoint holds, so a resumed run decides exactly as an uninterrupted one; the best epoch's weights are kept in
the checkpoint beside the last epoch's. Keras-free at import (the callback imports Keras when made).
"""
import math

MONITOR = "validation_loss"  # the validation slice's loss: the objective's bound on those images


def progress(rows, patience, warmup=0):
    """(best value, its epoch (1-based, None before any), whether training stops after the last row) from history
    rows; the first epoch of equal best values counts. The epochs of a KL warm-up are not judged: their loss
    weighs the KL below its final weight, so it is not yet the bound the run optimises."""
    best, best_epoch = math.inf, None
    for row in rows:
        value = row.get(MONITOR)
        if row["epoch"] > warmup and value is not None and value < best:
            best, best_epoch = value, row["epoch"]
    stop = bool(patience) and best_epoch is not None and rows[-1]["epoch"] - best_epoch >= patience
    return best, best_epoch, stop


def callback(patience, rows, warmup=0):
    """A Keras callback that ends fit after the epoch that exhausts the patience, continuing from the history rows
    of the epochs done before (a resumed run's)."""
    import keras

    class EarlyStopping(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows = [{"epoch": row["epoch"], MONITOR: row.get(MONITOR)} for row in rows]

        def on_epoch_end(self, epoch, logs=None):
            if self.model.stop_training:
                return  # cut short by a signal or a NaN: not an epoch to judge
            self.rows.append({"epoch": epoch + 1, MONITOR: (logs or {}).get(MONITOR)})
            if progress(self.rows, patience, warmup)[2]:
                self.model.stop_training = True

    return EarlyStopping()


def summary(rows, patience, warmup=0):
    """What early stopping chose, for eval.json and the pages: {patience, chosen_epoch, best_validation_loss,
    trained_epochs, stopped_early}; chosen_epoch and best_validation_loss are None when no epoch was judged."""
    best, best_epoch, stop = progress(rows, patience, warmup)
    # None, not infinity, where no epoch was judged (a warm-up longer than the run): JSON has no infinity.
    return {"patience": patience, "chosen_epoch": best_epoch, "best_validation_loss": best if best_epoch else None,
            "trained_epochs": rows[-1]["epoch"] if rows else 0, "stopped_early": stop}
