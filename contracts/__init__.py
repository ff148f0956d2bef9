"""duban's public language: events, commands, the envelope, subjects and jurisdictions.

Depends on pydantic and the standard library only, so that other systems can publish and
read duban's events with this package alone.
"""
