"""Parsing, the envelope, signatures, keys and trust: everything that decides whether bytes can be believed."""
