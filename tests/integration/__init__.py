"""Integration tests: real RabbitMQ/PostgreSQL, real HTTP/SOAP peers on 127.0.0.1, xmlsec1, the CLI."""
