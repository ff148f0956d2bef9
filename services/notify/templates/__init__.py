"""The Chinese texts of notify's notices and of the public disclosure page (Jinja2, ``*.j2``).

Staff change these files without touching code; a deployment may put its own versions of any of
them in the folder named by ``DUBAN_TEMPLATES_DIR``, which is searched first.
"""
