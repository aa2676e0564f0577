"""Readable references: loops and formulas, short, held equal to the fast paths by tests."""
