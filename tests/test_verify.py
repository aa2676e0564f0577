"""`refdet verify`: targets, module:callable, self-check coverage, table / --json / progress / exit codes."""
import json
import re

import numpy as np
import pytest

from refdet import verify as V
from refdet.cli import main


def test_callable_target_wrong_nms_fails_with_cause(capsys):
    rc = main(["verify", "--op", "nms", "tests.wrong_impls:wrong_nms_inclusive", "--cases", "4", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "tests.wrong_impls:wrong_nms_inclusive" in out and "FAIL" in out
    assert "inclusive=True" in out and "EXACTLY" in out          # the full explanation follows the table


def test_callable_target_right_impl_passes_and_progress_on_stderr(capsys):
    rc = main(["verify", "--op", "box_iou", "tests.wrong_impls:right_box_iou", "--cases", "4"])
    cap = capsys.readouterr()
    assert rc == 0
    assert "box_iou" in cap.out and "1 of 1 checks agree" in cap.out
    assert "tests.wrong_impls:right_box_iou box_iou:" in cap.err and "cases" in cap.err   # progress line


def test_callable_with_grad_and_convention(capsys):
    rc = main(["verify", "--op", "relu", "tests.wrong_impls:right_relu", "--grad",
               "tests.wrong_impls:wrong_relu_grad_at_zero", "--cases", "3", "--quiet", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 1 and data["ok"] is False
    (row,) = data["rows"]
    assert row["op"] == "relu" and row["agreeing"] < row["cases"] and "ReLU'(0) = 1" in row["first_mismatch"]
    # the decoder without clamp under the detectron2 profile (which clamps like torchvision)
    rc = main(["verify", "--op", "decode_boxes", "tests.wrong_impls:wrong_decode_no_clamp", "--convention",
               "detectron2", "--cases", "2", "--quiet", "--json"])
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert rc == 1 and row["convention"] == "detectron2" and "clamp_mode='none'" in row["first_mismatch"]


@pytest.mark.parametrize("argv,err", [
    (["verify", "tests.wrong_impls:right_nms"], "needs `--op`"),
    (["verify", "--op", "nmx", "tests.wrong_impls:right_nms"], "`--op` must be one of"),
    (["verify", "tensorrt"], "must be torchvision, onnxruntime"),
    (["verify", "onnx-reference", "--op", "box_iou"], "does not provide box_iou"),
    (["verify", "--op", "nms", "no_such_module_xyz:f"], "cannot import module"),
    (["verify", "--op", "nms", "tests.wrong_impls:nope"], "has no attribute"),
    (["verify", "--op", "nms", "--grad", "tests.wrong_impls:right_relu_grad", "tests.wrong_impls:right_nms"],
     "`--grad` applies to"),
])
def test_usage_errors_exit_2(argv, err, capsys):
    if "onnx-reference" in argv:
        pytest.importorskip("onnx")
    assert main(argv + ["--quiet"]) == 2
    assert err in capsys.readouterr().err


def test_every_forward_backward_pair_has_a_gradient_check():
    covered, missing, exempt = V.gradcheck_coverage()
    assert not missing, missing
    assert "refdet.layers.conv2d_forward" in covered and "refdet.losses.detector.retinanet_loss_forward" in covered
    assert "refdet.heads.rpn.rpn_head_forward" in covered and "refdet.box_coder.decode_boxes_forward" in covered
    assert exempt == ["refdet.quant.fake_quant.fake_quant_forward"]


def test_a_new_pair_without_a_check_is_reported(monkeypatch):
    from refdet import losses

    def mystery_forward(x):
        return x, None

    def mystery_backward(d, c):
        return d
    mystery_forward.__module__ = mystery_backward.__module__ = "refdet.losses"
    monkeypatch.setattr(losses, "mystery_forward", mystery_forward, raising=False)
    monkeypatch.setattr(losses, "mystery_backward", mystery_backward, raising=False)
    _, missing, _ = V.gradcheck_coverage()
    assert missing == ["refdet.losses.mystery_forward"]


def test_self_check(capsys):
    rc = main(["verify", "self", "--cases", "3", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "gradcheck: conv2d 3x3 pad 1" in out and "gradcheck: retinanet_loss" in out
    assert "invariant: NMS unique, sorted, idempotent" in out and "skipped" in out


def test_format_table_lists_failures_after_the_table():
    rows = [dict(target="t", op="nms", cases=3, agreeing=2, worst_error=1.0, unit="positions", ok=False,
                 first_mismatch="golden case 'x'\n  detail line"),
            dict(target="t", op="relu", cases=2, agreeing=2, worst_error=0.0, unit="", ok=True, first_mismatch=None)]
    text = V.format_table(rows)
    assert text.splitlines()[0].split() == ["target", "op", "cases", "agreeing", "worst", "error", "first",
                                           "mismatch"]
    assert "FAIL: golden case 'x'" in text and "== t / nms ==" in text and "detail line" in text
    assert "1 of 2 checks agree; 1 disagree" in text


def test_torchvision_target_agrees(capsys):
    pytest.importorskip("torchvision")
    rc = main(["verify", "torchvision", "--cases", "3", "--quiet", "--json"])
    data = json.loads(capsys.readouterr().out)
    ops = {r["op"] for r in data["rows"]}
    assert {"nms", "batched_nms", "box_iou", "generalized_box_iou", "match", "encode_boxes", "decode_boxes",
            "anchors", "sigmoid_focal_loss", "relu", "conv2d", "sample_balanced"} <= ops
    assert rc == 0 and data["ok"], [r["first_mismatch"] for r in data["rows"] if not r["ok"]]


@pytest.mark.parametrize("target,module", [("onnxruntime", "onnxruntime"), ("onnx-reference", "onnx")])
def test_onnx_targets_agree(target, module, capsys):
    pytest.importorskip(module)
    rc = main(["verify", target, "--cases", "3", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "nms" in out and "conv2d" in out and "relu" in out


def test_backend_restricted_to_one_op():
    pytest.importorskip("torchvision")
    rows = V.verify("torchvision", op="box_iou", n_cases=2)
    assert [r["op"] for r in rows] == ["box_iou"] and rows[0]["ok"]


def test_torchvision_adapter_differs_from_a_wrong_convention():
    # torchvision's NMS compared with refdet's caffe profile (>=, +1 pixels, highest-index ties) disagrees,
    # and the explanation says which knobs reproduce torchvision's answer
    pytest.importorskip("torchvision")
    from refdet.testing import conformance as C

    tv = V._torchvision_adapters()["nms"]["fn"]
    rep = C.check_nms(tv, convention="caffe", n_cases=0, raise_on_failure=False)
    assert not rep.ok and "likely cause" in rep.first_mismatch
    assert np.isfinite(rep.worst_error)


def test_gradcheck_command_runs_every_registered_case(capsys):
    from refdet.cli import main

    assert main(["gradcheck", "conv2d", "focal"]) == 0
    out = capsys.readouterr().out
    assert "conv2d" in out and "focal" in out and "0 failed" in out


def test_missing_backend_names_the_extra(capsys, monkeypatch):
    """A target whose packages are missing is one line naming the pip extra (exit 2)."""
    monkeypatch.setattr(V, "_installed", lambda mods: False)
    assert main(["verify", "torchvision", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "needs torch, torchvision" in err and "pip install 'refdet[torch]'" in err
    assert "Traceback" not in err


def test_console_script_imports_the_users_module_from_the_current_directory(tmp_path):
    """`refdet verify --op nms myops:nms` works from the folder holding myops.py (as `python -m` does)."""
    import os
    import shutil
    import subprocess
    import sys
    script = shutil.which("refdet", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("the refdet console script is not installed in this environment")
    (tmp_path / "myops_refdet_test.py").write_text(
        "import refdet\n\ndef nms(boxes, scores, iou_threshold):\n"
        "    return refdet.nms(boxes, scores, iou_threshold)\n")
    r = subprocess.run([script, "verify", "--op", "nms", "myops_refdet_test:nms", "--cases", "3", "--quiet"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


def test_gradcheck_unknown_name_lists_the_cases(capsys):
    assert main(["gradcheck", "nosuchname"]) == 2
    err = capsys.readouterr().err
    assert "no gradient-check case matches 'nosuchname'" in err and "conv2d" in err


def test_gradcheck_negative_seed_names_the_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["gradcheck", "--seed", "-1"])
    assert e.value.code == 2
    assert "--seed: must be an integer >= 0; got -1" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# issue 14: RoI operators, FPN levels and proposal selection in `refdet verify`
# --------------------------------------------------------------------------------------------------

ROI_OPS = ("roi_align", "roi_pool", "assign_roi_levels", "filter_proposals")


def test_torchvision_target_has_the_roi_ops_and_agrees():
    pytest.importorskip("torchvision")
    rows = V.run_target("torchvision", ops=ROI_OPS, n_cases=6)
    assert [r["op"] for r in rows] == list(ROI_OPS)
    assert all(r["ok"] and r["cases"] > 6 for r in rows), [r["first_mismatch"] for r in rows if not r["ok"]]


@pytest.mark.parametrize("target,module", [("onnxruntime", "onnxruntime"), ("onnx-reference", "onnx")])
def test_onnx_targets_run_roialign_and_agree(target, module):
    pytest.importorskip(module)
    rows = V.run_target(target, ops=["roi_align"], n_cases=10)
    assert rows[0]["op"] == "roi_align" and rows[0]["ok"], rows[0]["first_mismatch"]
    assert rows[0]["cases"] == 24


def test_onnx_roialign_adapter_differs_from_torchvision_when_modes_are_crossed():
    # run ONNX RoiAlign with half_pixel where the check asks for aligned=False: the shift is named
    pytest.importorskip("onnxruntime")
    from refdet.testing import conformance as C

    fn = V._onnx_roi_adapters("onnxruntime")["roi_align"]["fn"]
    rep = C.check_roi_align(lambda x, r, size, scale, sr, al: fn(x, r, size, scale, sr, True), n_cases=0,
                            raise_on_failure=False)
    assert not rep.ok and "aligned=True: a half-pixel shift where the reproduced framework has none" in \
        rep.first_mismatch


def test_self_check_has_the_roi_rows(capsys):
    rows = V._roi_self_rows(3, 0, None)
    assert [r["op"] for r in rows] == ["roi_align vs loop reference", "roi_pool vs loop reference",
                                       "assign_roi_levels vs loop reference"]
    assert all(r["ok"] and r["target"] == "self" for r in rows), [r["first_mismatch"] for r in rows]


def test_callable_roi_align_with_a_convention(tmp_path, monkeypatch, capsys):
    (tmp_path / "myroi_refdet_test.py").write_text(
        "from tests import wrong_impls as W\n\n"
        "def roi_align(x, rois, size, scale, sr, aligned):\n"
        "    return W.wrong_roi_align_yx_boxes(x, rois, size, scale, sr, aligned)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rc = main(["verify", "--op", "roi_align", "myroi_refdet_test:roi_align", "--cases", "2", "--quiet",
               "--convention", "detectron2"])
    out = capsys.readouterr().out
    assert rc == 1 and "box given as (y1, x1, y2, x2)" in out
    row = V.run_callable("myroi_refdet_test:roi_align", "roi_align", convention="detectron2", n_cases=0)
    assert row["convention"] == "detectron2" and not row["ok"]


# ---------------------------------------------------------------------------------------------------
# the YOLO family: the `ultralytics` target and the YOLO ops for module:callable
# ---------------------------------------------------------------------------------------------------

def test_ultralytics_target_agrees(capsys):
    pytest.importorskip("torchvision")
    pytest.importorskip("ultralytics")
    rc = main(["verify", "ultralytics", "--cases", "4", "--quiet", "--json"])
    data = json.loads(capsys.readouterr().out)
    ops = {r["op"] for r in data["rows"]}
    assert {"make_anchors", "dfl_decode", "task_aligned_assign", "yolo_nms", "distribution_focal_loss",
            "varifocal_loss"} <= ops
    assert rc == 0 and data["ok"], [r["first_mismatch"] for r in data["rows"] if not r["ok"]]


def test_ultralytics_target_missing_names_the_yolo_extra(capsys, monkeypatch):
    real = V._installed
    monkeypatch.setattr(V, "_installed", lambda mods: "ultralytics" not in mods and real(mods))
    assert main(["verify", "ultralytics", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"needs [a-z, ]*ultralytics", err) and "pip install 'refdet[yolo]'" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("op,impl,words", [
    ("task_aligned_assign", "wrong_tal_lowest_index", "resolved by the lower index"),
    ("yolov5_decode", "wrong_yolov5_decode_v3_centre", "centre decoded as σ(t) + c, expected 2σ(t) − 0.5 + c"),
    ("make_anchors", "wrong_make_anchors_no_offset", "anchor points at grid (x, y), expected grid + 0.5"),
    ("dfl_decode", "wrong_dfl_bins_0_to_reg_max", "DFL bins 0..reg_max"),
    ("yolo_nms", "wrong_yolo_nms_agnostic", "class-agnostic NMS"),
])
def test_callable_yolo_ops_fail_with_cause(op, impl, words, capsys):
    rc = main(["verify", "--op", op, f"tests.wrong_impls:{impl}", "--cases", "3", "--quiet", "--json"])
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert rc == 1 and row["op"] == op and words in row["first_mismatch"]
    assert row["convention"] in ("ultralytics", "yolov5")        # the op's own profile, not torchvision


def test_callable_yolo_ops_pass_with_grad_and_convention(capsys):
    rc = main(["verify", "--op", "task_aligned_assign", "tests.wrong_impls:right_tal", "--cases", "3", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "task_aligned_assign" in out, out
    rc = main(["verify", "--op", "distribution_focal_loss", "tests.wrong_impls:right_dfl", "--cases", "3", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    # the paper's TAL (plain IoU, no enlargement) is not ultralytics': the explanation names the knob
    rc = main(["verify", "--op", "task_aligned_assign", "tests.wrong_impls:right_tal", "--convention", "paper",
               "--cases", "3", "--quiet", "--json"])
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert rc == 1 and row["convention"] == "paper"
    assert main(["verify", "--op", "varifocal_loss", "--grad", "tests.wrong_impls:right_relu_grad",
                 "tests.wrong_impls:right_vfl", "--cases", "1", "--quiet"]) == 1


def test_yolo_gradcheck_cases_in_self_check():
    covered, missing, _ = V.gradcheck_coverage()
    assert "refdet.heads.yolo.yolo_head_forward" in covered and not missing
    from refdet.testing.gradcheck import _CASES
    assert V.YOLOStepCase.NAME in _CASES
