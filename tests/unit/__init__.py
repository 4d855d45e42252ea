"""Unit tests: one module or a few in process, no server, no service, no child process."""
