"""The readable versions: loops and formulas, short, held equal to the vectorised code by tests."""
