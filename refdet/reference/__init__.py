"""Readable references, loops and formulas, held equal to the fast paths by tests.

Each module here restates one op family the way a paper or a runtime's source writes it: plain loops
over boxes or output positions, exact rational arithmetic where bits are defined, no buffer reuse and
no vectorisation tricks. They are slow on purpose and meant for small inputs; every fast function
names its reference in its docstring, and a property test holds the two equal (bit for bit where
both follow the same order of operations, else within a stated bound).
"""
