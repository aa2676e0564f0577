"""The ``refdet anchors`` teaching command, run through refdet.cli.main: the numbers it prints."""
import re

import pytest

from refdet import cli
from refdet.walkthrough import anchors_report


def _run(capsys, *argv):
    code = cli.main(["anchors", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_faster_rcnn_default_is_the_seed_rpn(capsys):
    code, out, err = _run(capsys)
    assert code == 0 and err == ""
    # 800 x 800 -> one 50 x 50 stride-16 map; 3 sizes x 3 ratios = 9 per location
    assert "50 x 50" in out and "800 // 50 = 16" in out
    assert "22,500 anchors" in out
    # head shapes: objectness (2500, 9), deltas (2500, 36), per anchor (22500, 4)
    assert "per location (2500, 9)" in out
    assert "per location (2500, 36)" in out
    assert "per anchor (22500, 4)" in out
    assert "(1, 36, 50, 50)" in out
    # the torchvision cell anchors for size 128, ratio 0.5: [-91, -45, 91, 45]
    assert re.search(r"0\s+128\s+0\.5\s+-91\s+-45\s+91\s+45\s+182 x 90", out)
    # py-faster-rcnn's first anchor (TV1 row 0) and its non-nominal area 184 * 96 = 17,664
    assert "[-84, -40, 99, 55]" in out and "17,664" in out


def test_faster_rcnn_other_image_size(capsys):
    # 600 x 1000 is padded to 608 x 1024 -> 38 x 64 map -> 38 * 64 * 9 = 21,888 anchors
    code, out, _ = _run(capsys, "faster-rcnn", "--image-size", "600", "1000")
    assert code == 0
    assert "608 x 1024" in out and "38 x 64" in out and "21,888 anchors" in out
    assert "per location (2432, 36)" in out


def test_retinanet(capsys):
    code, out, _ = _run(capsys, "retinanet")
    assert code == 0
    # (100^2 + 50^2 + 25^2 + 13^2 + 7^2) * 9 = 13,343 * 9 = 120,087
    assert "120,087" in out
    assert "(120087, 91)" in out and "(120087, 4)" in out
    assert "(10000, 819)" in out and "(10000, 36)" in out          # P3: 91 * 9 and 4 * 9 channels
    # torchvision's strides from image // feature: 800 // 13 = 61, 800 // 7 = 114
    assert "P6 gets 61" in out and "P7 gets 114" in out
    assert "(64, 80, 101)" in out                                   # int(64 * 2^(2/3)) = 101


def test_ssd300(capsys):
    code, out, _ = _run(capsys, "ssd300", "--num-classes", "21")
    assert code == 0
    # 38^2*4 + 19^2*6 + 10^2*6 + 5^2*6 + 3^2*4 + 1*4 = 8,732
    assert "8,732" in out and "(8732, 21)" in out and "(8732, 4)" in out
    assert "(1444, 84)" in out and "(1444, 16)" in out              # 21 * 4 and 4 * 4 channels
    assert "[-6.5, -6.5, 14.5, 14.5]" in out                        # TV7's first box


def test_bad_arguments(capsys):
    code, _, err = _run(capsys, "ssd300", "--image-size", "20", "20")
    assert code == 2 and "image_size" in err
    with pytest.raises(SystemExit):
        cli.main(["anchors", "yolo"])
    with pytest.raises(ValueError, match="`preset`"):
        anchors_report("yolo")


def test_report_matches_cli(capsys):
    _, out, _ = _run(capsys, "retinanet", "--image-size", "640", "480")
    assert out == anchors_report("retinanet", (640, 480))


def test_preset_option_is_the_positional(capsys):
    assert cli.main(["anchors", "--preset", "retinanet", "--image-size", "640", "480"]) == 0
    assert capsys.readouterr().out == anchors_report("retinanet", (640, 480))


def test_reference_source_names_file_and_line():
    import inspect

    from refdet.reference import matcher
    from refdet.walkthrough import reference_source
    text = reference_source("matcher.match", "nms.nms")
    start = inspect.getsourcelines(matcher.match)[1]
    assert text.startswith(f"# refdet/reference/matcher.py, line {start}: match\ndef match(")
    assert "\n# refdet/reference/nms.py, line " in text and "def nms(" in text
    with pytest.raises(ValueError, match="module.function"):
        reference_source("match")
