"""``hub bench``'s broker size per message (``hub.devtools.bench._broker_size``): a size that grew is divided by
the messages; one that fell (RabbitMQ freeing what earlier runs left) gives no per-message figure, and says why."""

from __future__ import annotations

from hub.devtools.bench import _broker_size


def test_growth_is_divided_by_the_messages() -> None:
    size = _broker_size("embedded", 1_000_000, 1_500_000, 1000)
    assert size["bytes_per_message"] == 500.0 and "fell" not in size


def test_a_size_that_fell_gives_no_figure_and_says_so() -> None:
    size = _broker_size("embedded", 2_000_000, 1_500_000, 1000)
    assert size["bytes_per_message"] is None and "fell during the run" in size["fell"]


def test_an_unread_size_gives_no_figure() -> None:
    assert _broker_size("embedded", None, 1_500_000, 1000)["bytes_per_message"] is None
