"""The fuzz suite's machinery (tests/test_fuzz_public.py runs it; tests/test_fuzz_files.py is the file half).

* :mod:`tests.fuzz.hostile`: the hostile variants of one valid argument;
* :mod:`tests.fuzz.seeds`: one or more valid calls of every public function (the contract cases of
  ``tests/contract/*.py`` plus the names they do not cover: ``refdet.testing``, the observers'
  methods, the detector, the synthetic data set ...);
* :mod:`tests.fuzz.documented`: the explicit table of answers that are documented, not errors;
* :mod:`tests.fuzz.runner`: walks the calls in a memory-capped subprocess and reports what broke;
* :mod:`tests.fuzz.wrong`: deliberately broken functions, the runner's self-test (``--selftest``).

Run by hand: ``python -m tests.fuzz.runner [--examples N] [name ...]`` prints a JSON report (every failure,
the open findings of modules owned elsewhere, and the counts).
"""
