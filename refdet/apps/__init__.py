"""The application layer: the commands behind ``refdet <command>``, built on the library.

Modules here may import anything in refdet (detectors, synthetic data, the demo); no library module
imports them.
"""
