"""What every duban service shares: settings, the event store, the projector, telemetry, NATS."""
