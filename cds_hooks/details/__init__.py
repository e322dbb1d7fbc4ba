"""The details view behind a card's link: every input with its source, the explanation, what-if, limitations."""
