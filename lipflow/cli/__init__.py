"""The ``lipflow`` command line."""
