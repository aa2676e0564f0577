"""Adapters that run an installed runtime's operators behind refdet's signatures (NumPy in, NumPy
out), for ``refdet verify <runtime>`` and the differential tests. Each module imports its runtime
only when its adapters are built; the core never imports this package."""
