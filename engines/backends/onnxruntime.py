"""ONNX Runtime backend: the CPU default; CUDA / TensorRT providers where present."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from core.meta import META_KEY, ModelError, ModelMeta, read_sidecar
from engines.base import Backend

log = logging.getLogger(__name__)

# Provider preference per device (``tensorrt``: ``--backend tensorrt`` on an
# ``.onnx`` file); only those installed are used.
PROVIDERS: dict[str, list[str]] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ],
}


def _reduce_node(op: str, src: str, dst: str, axes: list[int], axes_name: str,
                 axes_as_input: bool) -> Any:
    """A keepdims Reduce* node; its axes are an input from some opset on."""
    from onnx import helper

    if axes_as_input:
        return helper.make_node(op, [src, axes_name], [dst], keepdims=1)
    return helper.make_node(op, [src], [dst], axes=axes, keepdims=1)


def decompose_softmax(model: Any) -> int:
    """Rewrite, in place, each float32 ``Softmax`` of the main graph that runs over
    a non-last axis as ``Exp(x - ReduceMax) / ReduceSum`` over that axis; returns
    how many. ONNX Runtime's CPU kernel transposes around such a softmax: the DFL
    softmax of a YOLOv8/11 export ([1, 16, 4, 3549], axis 1) takes 2.1 ms of a
    32 ms single-thread call, its decomposition 0.5 ms (same values to 5e-7).
    Left alone where the rank or dtype is unknown."""
    import onnx
    from onnx import helper

    def is_softmax(node: Any) -> bool:
        return node.op_type == "Softmax" and node.domain in ("", "ai.onnx")

    if not any(is_softmax(n) for n in model.graph.node):
        return 0
    opset = next((o.version for o in model.opset_import
                  if o.domain in ("", "ai.onnx")), 0)
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # custom ops, malformed shapes: keep the graph as it is
        return 0
    types = {v.name: v.type.tensor_type for v in
             [*inferred.input, *inferred.value_info, *inferred.output]}
    nodes, count = [], 0
    for node in model.graph.node:
        tensor = types.get(node.input[0]) if is_softmax(node) else None
        if tensor is None or tensor.elem_type != onnx.TensorProto.FLOAT \
                or not tensor.HasField("shape"):
            nodes.append(node)
            continue
        rank = len(tensor.shape.dim)
        axis = next((a.i for a in node.attribute if a.name == "axis"),
                    -1 if opset >= 13 else 1) % max(rank, 1)
        if axis == rank - 1:
            nodes.append(node)
            continue
        # before opset 13 a softmax covers every axis from ``axis`` on
        axes = [axis] if opset >= 13 else list(range(axis, rank))
        base = f"{node.name or node.output[0]}/decomposed"
        model.graph.initializer.append(helper.make_tensor(
            f"{base}/axes", onnx.TensorProto.INT64, [len(axes)], axes))

        x, axes_name = node.input[0], f"{base}/axes"
        nodes += [
            _reduce_node("ReduceMax", x, f"{base}/max", axes, axes_name, opset >= 18),
            helper.make_node("Sub", [x, f"{base}/max"], [f"{base}/shifted"]),
            helper.make_node("Exp", [f"{base}/shifted"], [f"{base}/exp"]),
            _reduce_node("ReduceSum", f"{base}/exp", f"{base}/sum", axes, axes_name,
                         opset >= 13),
            helper.make_node("Div", [f"{base}/exp", f"{base}/sum"], [node.output[0]]),
        ]
        count += 1
    if count:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return count


def read_meta(path: Path, custom: dict[str, str]) -> ModelMeta | None:
    """Metadata from the ONNX's ``metadata_props``, else from our sidecar beside
    it (``core.meta.read_sidecar``: any other ``.json`` there is ignored)."""
    if META_KEY in custom:
        return ModelMeta.from_json(custom[META_KEY])
    return read_sidecar(path)


class OnnxRuntimeBackend(Backend):
    """Runs an ``.onnx`` file; ``threads`` = intra-op threads (default: all cores).

    ``spin``: intra-op threads busy-wait between work items (ONNX Runtime's own
    default). Off (ours), they sleep, leaving the cores to the decoding, drawing
    and encoding threads of the same process: on a 2-core machine, end to end
    over the PETS clip, 0.041 instead of 0.054 CPU-seconds per frame and 1.6x the
    FPS (median of 3 interleaved runs, ``benchmarks/vs_ultralytics.py``).
    """

    def __init__(
        self, path: str | Path, device: str = "cpu", threads: int | None = None,
        tensorrt: bool = False, spin: bool = False,
    ) -> None:
        self.tensorrt = tensorrt
        self.spin = spin
        super().__init__(path, device, threads)

    def load(self) -> None:
        import onnxruntime as ort

        self._single: Any = None  # 1-thread session for parallel chunks
        available = set(ort.get_available_providers())
        kind, _, index = self.device.partition(":")
        if self.tensorrt:
            if kind == "cpu":
                raise ModelError(f"{self.path}: --backend tensorrt runs on a GPU; "
                                 "pass --device cuda[:N]")
            kind = "tensorrt"
        wanted = PROVIDERS[kind]
        device_id = int(index) if index.isdigit() else 0
        providers: list[Any] = [
            (p, {"device_id": device_id}) if p != "CPUExecutionProvider" else p
            for p in wanted if p in available]
        if wanted[0] not in available:
            log.warning("%s is not available in this onnxruntime build (have %s); "
                        "running on CPU", wanted[0], sorted(available))
        self._providers = providers
        self._source: str | bytes = str(self.path)
        self.rewritten_softmax = 0
        try:
            if kind == "cpu":
                self._decompose_softmax()
            self.session = self._session(self.threads or (os.cpu_count() or 1))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ModelError(
                f"{self.path}: not a loadable ONNX model "
                f"({type(exc).__name__}: {first_line[:300]})"
            ) from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(
                f"{self.path}: expected one image input, found "
                f"{[i.name for i in inputs]}"
            )
        self.input_name = inputs[0].name
        self.input_shape = tuple(inputs[0].shape)
        # fp16 exports (e.g. Ultralytics `half=True`) take float16 input
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else None
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.output_shapes = [tuple(o.shape) for o in self.session.get_outputs()]
        custom = self.session.get_modelmeta().custom_metadata_map
        try:
            self.meta = read_meta(self.path, custom)
        except ModelError:
            raise
        except (ValueError, TypeError) as exc:
            raise ModelError(
                f"{self.path}: unreadable streamdet metadata: {exc}"
            ) from exc
        self.providers = self.session.get_providers()
        if kind == "cpu":
            self._allow_parallel_chunks()
        log.info(
            "loaded %s on %s: input %s %s, outputs %s",
            self.path.name,
            self.providers[0],
            self.input_name,
            self.input_shape,
            dict(zip(self.output_names, self.output_shapes, strict=True)),
        )

    def _decompose_softmax(self) -> None:
        """Feed the session a copy with ``decompose_softmax`` applied, when it
        changes anything (the file on disk stays as it is)."""
        import onnx

        try:
            model = onnx.load(str(self.path), load_external_data=False)
            if any(t.data_location == onnx.TensorProto.EXTERNAL
                   for t in model.graph.initializer):
                return  # weights beside the file: left to ONNX Runtime to map
            count = decompose_softmax(model)
            if count:
                self._source = model.SerializeToString()  # over 2 GB: ValueError
        except Exception:  # let ONNX Runtime load (or reject) the file itself
            return
        self.rewritten_softmax = count
        if count:
            log.debug("%s: %d Softmax over a non-last axis run decomposed",
                      self.path.name, self.rewritten_softmax)

    def _session(self, threads: int) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if not self.spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(self._source, options,
                                    providers=self._providers)

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        if self.input_dtype is not None:
            batch = batch.astype(self.input_dtype)
        if self._chunked(batch):
            outputs = self._infer_chunks(batch)
        else:
            outputs = self.session.run(self.output_names, {self.input_name: batch})
        return [o.astype(np.float32) if o.dtype == np.float16 else o for o in outputs]

    def _open_chunk_runner(self) -> None:
        self._single = self._session(1)

    def _run_chunk(self, chunk: np.ndarray) -> list[np.ndarray]:
        # a session runs concurrent calls, and ONNX Runtime releases the GIL
        return self._single.run(self.output_names, {self.input_name: chunk})

    def close(self) -> None:
        self._close_chunks()
        self._single = None
        self.session = None  # type: ignore[assignment]
