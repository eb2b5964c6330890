"""A synthetic bank: customers, cards, terminals, genuine behaviour and fraud scenarios."""
