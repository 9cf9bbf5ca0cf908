"""How a settlement is posted to the double-entry books of the agencies."""
