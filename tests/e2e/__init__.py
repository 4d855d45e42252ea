"""End-to-end tests: hub processes, the demo, fault injection and the browser."""
