"""ONNX Runtime backend: the CPU default; CUDA / TensorRT providers where present."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from core.meta import META_KEY, ModelError, ModelMeta, sidecar_path
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


def read_meta(path: Path, custom: dict[str, str]) -> ModelMeta | None:
    """Metadata from the ONNX's ``metadata_props``, else from a ``.json`` sidecar."""
    if META_KEY in custom:
        return ModelMeta.from_json(custom[META_KEY])
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        return ModelMeta.from_json(sidecar.read_text())
    return None


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
        try:
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

    def _session(self, threads: int) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if not self.spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(self.path), options,
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
