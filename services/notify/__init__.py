"""Notify: notices over real channels, the four lists, the monthly summary and public disclosure."""
