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
