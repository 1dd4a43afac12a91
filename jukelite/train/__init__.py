"""Training: one trainer for every component, driven by recipes."""

from jukelite.train.run import dry_run, export_checkpoint, train_recipe

__all__ = ["dry_run", "export_checkpoint", "train_recipe"]
