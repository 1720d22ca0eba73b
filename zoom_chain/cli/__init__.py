"""zoom_chain's subcommands of ``cotrain`` (declared as ``cotrain.commands`` entry points in pyproject.toml):
``zoom`` (answer one question on one large image), ``eval-zoom`` (score the chain against overview-only and
oracle modes) and ``make-zoom-data`` (chain training records from the synthetic zoom split)."""
