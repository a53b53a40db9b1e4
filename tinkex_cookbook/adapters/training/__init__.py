"""Training backends: one module per adapter of the ``training_client`` port."""
