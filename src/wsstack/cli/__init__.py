"""The subcommands of ``python -m wsstack``: one module each, assembled in ``wsstack.__main__``.

Each module has ``register(subparsers)``, which adds its parser and sets
``handler`` to the function that runs it and returns the exit status.
"""
