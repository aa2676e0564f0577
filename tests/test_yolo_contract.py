"""Every public name of refdet.yolo has a contract case or an exemption (tests/contract/yolo.py).

The cases themselves run in tests/test_contract.py (read-only inputs, bad boxes, bad input); this file
checks the coverage of the subpackage, which test_contract's coverage test (refdet.__all__) does not
see, and that each case's name resolves.
"""
import refdet.yolo
from tests.contract import yolo as contract


def test_every_yolo_name_is_covered():
    covered = {c.name for c in contract.CASES} | set(contract.EXEMPT)
    missing = [n for n in refdet.yolo.__all__ if f"yolo.{n}" not in covered]
    assert not missing, f"refdet.yolo names without a contract case or exemption: {missing}"


def test_contract_names_exist():
    for name in [c.name for c in contract.CASES] + [b.name for b in contract.BAD] + list(contract.EXEMPT):
        assert name.startswith("yolo.") and hasattr(refdet.yolo, name[5:]), name
