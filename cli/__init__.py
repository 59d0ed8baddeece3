"""The ``bastion`` command-line interface."""
