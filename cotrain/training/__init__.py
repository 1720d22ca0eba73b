"""Training: the run as a recipe (``recipe.run``), the thin Trainer, its loss, accounting and checkpoints."""
