"""The machinery around the three files a learner reads (train.py, model.py, losses.py): data, run
folders, checkpoints, signals, backends and devices, figures and the pages a run writes.

Scripts import this package; the package imports model and losses; never the other way round."""
