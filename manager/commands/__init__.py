"""Command groups of the ``ledgerlock`` manager: one module each, each with ``register(cli)``."""
