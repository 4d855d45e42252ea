"""The exchange core: accept pipeline, routing, outbox relay, delivery worker and the intake service."""
