"""Training: one trainer for every component, driven by recipes."""

from jukelite.train.run import dry_run, train_recipe

__all__ = ["dry_run", "train_recipe"]
