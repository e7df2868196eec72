"""Routing engine helpers: language detection (routing.engine.detect_language), raw column reads."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("text", "code"), [
    ("Where is my order?", "en"), ("Necesito un reembolso", "es"), ("Mi pedido no llegó", "es"),
    ("Hola, buenas tardes", "es"), ("Bonjour, j'ai un problème", "fr"), ("Olá, preciso de ajuda", "pt"),
    ("Dzień dobry, moje zamówienie nie dotarło, proszę o pomoc", "pl"),
    ("Merhaba, siparişim henüz gelmedi, yardım eder misiniz", "tr"),
    ("Hej, min beställning har inte kommit fram, kan ni hjälpa mig", "sv"),
    ("Здравствуйте, мой заказ ещё не пришёл", "ru"), ("こんにちは、注文した商品がまだ届きません", "ja"),
])
def test_language_detection_knows_more_than_the_main_languages(text, code):
    """A Polish customer is not taken for Dutch (and sent to the Dutch desk); short texts in the main
    languages stay right."""
    from conversations.conditions import detect_language

    assert detect_language(text) == code


def test_raw_datetime_columns_read_on_either_database_are_aware():
    """SQLite (the embedded product) hands raw datetime columns back as text or naive datetimes, in UTC;
    routing compares them with aware ones (a naive one failed every decision there)."""
    from datetime import UTC, datetime

    from conversations.conditions import db_datetime
    from routing.actions import _idle_us

    aware = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert db_datetime(datetime(2026, 11, 30, 12, 0)) == aware
    assert db_datetime("2026-11-30 12:00:00") == aware
    assert db_datetime(aware) == aware and db_datetime(None) is None
    assert _idle_us(datetime(1970, 1, 1, 0, 0, 1)) == 1_000_000 and _idle_us(None) == 0
