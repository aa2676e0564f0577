"""``refdet verify-export`` with OpenVINO (ONNX frontend, CPU plugin) and OpenCV dnn (ONNX importer):
each exported model runs in both and every output is compared with refdet; a runtime that cannot load
the model is listed as skipped (not as a disagreement); a disagreement names the runtime and output."""
import numpy as np
import pytest

pytest.importorskip("onnx")
import refdet.exchange.onnx as rx  # noqa: E402
from refdet.runtimes import onnx_runners  # noqa: E402

MODELS = ["rpn_head", "retinanet_head", "fpn", "postprocess", "quantized_retinanet_head", "yolo_postprocess"]


def _model(name):
    from refdet.exchange.cli import quantize_for_export, random_params

    base = "retinanet_head" if name == "quantized_retinanet_head" else name
    params = random_params(base, seed=0)
    if name == "quantized_retinanet_head":
        params = quantize_for_export(params, seed=0, height=13, width=9, scheme="onnx", activation_dtype="uint8",
                                     rescale=True)
    kw = dict(num_classes=4) if name == "yolo_postprocess" else {}
    return rx.export_onnx(params, model=name, **kw)


@pytest.mark.parametrize("runtime, module", [("openvino", "openvino"), ("opencv", "cv2")])
@pytest.mark.parametrize("name", MODELS)
def test_exported_models_agree_in_openvino_and_opencv(name, runtime, module):
    pytest.importorskip(module)
    report = rx.verify_onnx(_model(name), runtimes=(runtime,), rng=1, batch=2)
    assert report.rows and runtime not in report.skipped, report.skipped
    assert {r["runtime"] for r in report.rows} == {runtime}
    assert report.ok, str(report)


def test_all_runtimes_include_openvino_and_opencv():
    pytest.importorskip("onnxruntime")
    report = rx.verify_onnx(_model("rpn_head"), rng=0, runtimes=rx.ALL_RUNTIMES)
    ran = {r["runtime"] for r in report.rows} | set(report.skipped)
    assert {"onnxruntime", "onnx.reference", "openvino", "opencv"} <= ran


def test_a_runtime_that_cannot_load_is_skipped_not_a_disagreement(monkeypatch):
    pytest.importorskip("onnxruntime")

    def refuse(model_bytes, feeds, names):
        raise onnx_runners.RuntimeCannotRun("opencv cannot load the model: unsupported operator NonZero")
    monkeypatch.setitem(onnx_runners.RUNNERS, "opencv", refuse)
    report = rx.verify_onnx(_model("rpn_head"), runtimes=("onnxruntime", "opencv"), rng=0)
    assert report.ok
    assert "unsupported operator" in report.skipped["opencv"]
    assert all(r["runtime"] == "onnxruntime" for r in report.rows)


def test_a_disagreement_names_the_runtime_and_the_output(monkeypatch):
    real = onnx_runners.RUNNERS["openvino"]

    def off_by_one(model_bytes, feeds, names):
        out = real(model_bytes, feeds, names)
        out["deltas"] = out["deltas"] + 1e-2
        return out
    pytest.importorskip("openvino")
    monkeypatch.setitem(onnx_runners.RUNNERS, "openvino", off_by_one)
    report = rx.verify_onnx(_model("rpn_head"), runtimes=("openvino",), rng=0)
    bad = [(r["runtime"], r["output"]) for r in report.rows if not r["ok"]]
    assert bad == [("openvino", "deltas")]


def test_missing_runtime_is_skipped_with_the_extra(monkeypatch):
    def missing(model_bytes, feeds, names):
        raise ImportError("openvino is not installed: pip install 'refdet[openvino]'")
    pytest.importorskip("onnxruntime")
    monkeypatch.setitem(onnx_runners.RUNNERS, "openvino", missing)
    report = rx.verify_onnx(_model("rpn_head"), runtimes=("onnxruntime", "openvino"), rng=0)
    assert report.ok and "refdet[openvino]" in report.skipped["openvino"]


def test_cli_verify_export_lists_the_new_runtimes(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    import onnx
    from refdet.cli import main

    path = tmp_path / "rpn.onnx"
    onnx.save(_model("rpn_head"), str(path))
    assert main(["verify-export", str(path)]) == 0
    out = capsys.readouterr().out
    for rt in ("openvino", "opencv"):
        assert rt in out


def test_onnx_nms_through_openvino_suppresses_at_the_threshold():
    # IoU([0, 0, 10, 10], [0, 0, 10, 5]) = 0.5 = iou_threshold: ONNX keeps the box (IoU > threshold
    # suppresses; onnxruntime, refdet's "onnx" profile and OpenCV's importer agree); OpenVINO's ONNX
    # frontend maps the node onto its CPU NonMaxSuppression, which drops it (IoU >= threshold)
    pytest.importorskip("openvino")
    from onnx import TensorProto, helper
    from refdet.nms import onnx_non_max_suppression
    from refdet.runtimes.openvino import non_max_suppression

    g = helper.make_graph([helper.make_node("NonMaxSuppression", ["boxes", "scores", "m", "t"], ["sel"])], "g",
                          [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 2, 4]),
                           helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 2])],
                          [helper.make_tensor_value_info("sel", TensorProto.INT64, [None, 3])],
                          [helper.make_tensor("m", TensorProto.INT64, [1], [10]),
                           helper.make_tensor("t", TensorProto.FLOAT, [1], [0.5])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    m.ir_version = 9
    b = np.array([[[0, 0, 10, 10], [0, 0, 10, 5]]], np.float32)
    s = np.array([[[0.9, 0.8]]], np.float32)
    got = onnx_runners.run_openvino(m.SerializeToString(), {"boxes": b, "scores": s}, ["sel"])["sel"]
    assert got.tolist() == non_max_suppression(b, s, 10, 0.5).selected_indices.tolist() == [[0, 0, 0]]
    assert onnx_non_max_suppression(b, s, 10, 0.5).tolist() == [[0, 0, 0], [0, 0, 1]]
