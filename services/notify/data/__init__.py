"""Data files of notify: the example recipient directory (``directory.json``)."""
