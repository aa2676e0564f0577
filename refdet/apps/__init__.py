"""The ``refdet`` command line's applications: one module per command that is more than a few lines."""
