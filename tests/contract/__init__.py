"""The contract every public function keeps, declared per module.

Each ``tests/contract/<module>.py`` lists:

* ``CASES``: ``Case(name, make)`` with ``make(rng) -> (args, kwargs)``: a valid call. The contract
  test calls it with every array made read-only and checks that nothing passed in was modified. With
  ``box_args={position: "argname"}`` it also checks that a wrong shape, NaN and a string in that
  position are rejected with ValueError / ValueError / TypeError naming the argument.
* ``BAD``: ``Bad(name, make, error, match)``: a call that must raise ``error`` with a message
  matching the regex ``match``.
* ``EXEMPT``: ``{name: reason}`` for public names that are not functions of arrays (classes, constants).

``tests/test_contract.py`` fails if a public name of ``refdet`` is covered by none of them.
"""
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Case:
    name: str
    make: Callable
    box_args: dict = field(default_factory=dict)
    module: str = ""


@dataclass
class Bad:
    name: str
    make: Callable
    error: type
    match: str
