"""Each guard rule, with examples that must fire and paraphrases that must not."""

import pytest

from infopt.serve.cache._guard import HARD, edit_distance, extract, guard, normalize_numbers


@pytest.mark.parametrize(("text", "norm"), [
    ("Can I add two users?", "can i add 2 users?"), ("over $1,000", "over $1000"), ("twenty-five GB", "25 gb"),
    ("a hundred and fifty", "150"), ("at 5 pm", "at 17:00"), ("at 5:30pm", "at 17:30"), ("at noon", "at 12:00"),
    ("the 3rd of March", "the 3 march"), ("turn on two-factor authentication", "turn-on 2fa"),
])
def test_normalize_numbers(text: str, norm: str) -> None:
    assert normalize_numbers(text) == norm


def rules(a: str, b: str) -> set[str]:
    return set(guard(a, b, 0.9).penalties)


@pytest.mark.parametrize(("a", "b", "rule"), [
    ("Is the app free?", "Is the app not free?", "negation"),
    ("My refund arrived", "My refund hasn't arrived", "negation"),
    ("How do I enable 2FA?", "How do I disable 2FA?", "opposite-action"),
    ("How do I turn on alerts?", "How do I turn off alerts?", "opposite-action"),
    ("Add a card", "Remove a card", "opposite-action"),
    ("Increase my limit", "Decrease my limit", "opposite-action"),
    ("Can I add 2 users?", "Can I add 3 users?", "number"),
    ("orders over $50", "orders over $500", "number"),
    ("Is SDK v1.2 supported?", "Is SDK v1.3 supported?", "version"),
    ("invoices for 2023", "invoices for 2024", "date"),
    ("Open on Sunday?", "Open on Monday?", "date"),
    ("Is it within 10 km?", "Is it within 10 miles?", "unit"),
    ("Is 5 GB included?", "Is 5 MB included?", "unit"),
    ("Weather in Paris", "Weather in Prague", "entity"),
    ("Hotels in Paris", "Hotels in Pari", "entity"),
    ("Delete all my messages", "Delete one message", "scope"),
    ("Total revenue in 2023?", "Total revenue?", "date-one-sided"),
    ("Weather this week in London?", "Weather this week?", "entity-one-sided"),
])
def test_rule_fires(a: str, b: str, rule: str) -> None:
    assert rule in rules(a, b)
    assert guard(a, b, 0.95).score < 0.95


@pytest.mark.parametrize(("a", "b"), [
    ("Can I add two users?", "Can I add 2 users?"),
    ("Is shipping free over $1,000?", "Do orders above one thousand dollars ship free?"),
    ("Pick up at 5 pm?", "Pick up at 17:00?"),
    ("How do I enable 2FA?", "How do I turn on two-factor authentication?"),
    ("Hotels in Barcelona", "Hotels in Barcelna"),
    ("I can't remember my password", "I forgot my password"),
    ("Is the store open on Sunday?", "What are your opening hours on Sunday?"),
    ("Is it 99 pounds?", "Is it £99?"),
    ("Delete one message", "Delete a single message"),
])
def test_paraphrases_pass(a: str, b: str) -> None:
    assert guard(a, b, 0.9).penalties == {}


def test_hard_vetoes_and_explains() -> None:
    d = guard("How do I enable 2FA?", "How do I disable 2FA?", 0.97)
    assert d.vetoed and d.score <= 0.97 - HARD
    assert "opposite-action" in d.explain() and "0.970" in d.explain()


def test_soft_penalty_is_not_a_veto() -> None:
    d = guard("Weather this week in London?", "Weather this week?", 0.9)
    assert not d.vetoed and 0 < d.score < 0.9


def test_entities_and_edit_distance() -> None:
    assert edit_distance("paris", "pari") == 1 and edit_distance("kitten", "sitting") == 3
    assert "slack" in extract("How do I connect the app to Slack?").entities
    assert extract("Weather please").entities == frozenset()  # the sentence's first word is not an entity
