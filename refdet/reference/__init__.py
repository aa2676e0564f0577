"""Readable reference implementations: loops and formulas, short, held equal to the fast paths by tests.

Each module mirrors the fast module of its area (``refdet.reference.yolo`` for ``refdet.yolo``).
Nothing here is optimised; read it next to the paper.
"""
