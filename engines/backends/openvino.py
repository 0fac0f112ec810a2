"""OpenVINO backend (CPU): ``.onnx`` files, OpenVINO IR ``.xml`` (+ ``.bin``), and
Ultralytics ``NAME_openvino_model/`` folders (class names and input size from
their ``metadata.yaml``).

Inference precision: bf16 where the CPU has native bf16 (OpenVINO lists
``BF16`` among the CPU's optimisation capabilities), fp32 otherwise; the
precision that actually compiled is read back from the compiled model and kept
in ``precision`` ("bf16", "f32", ...), so logs and metrics can state it.
``precision="f32"`` (or "bf16") forces a hint. int8 comes from the model itself
(a QDQ ONNX from ``python -m training quantize`` runs its int8 kernels here).
"""

from __future__ import annotations

import logging
import queue
from pathlib import Path
from typing import Any

import numpy as np

from core.meta import (
    META_KEY,
    ModelError,
    ModelMeta,
    read_sidecar,
    write_sidecar,
)
from engines.base import Backend

log = logging.getLogger(__name__)

FOLDER_SUFFIX = "_openvino_model"  # what Ultralytics' export names the IR folder
PRECISIONS = ("bf16", "f32", "f16")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _embedded(path: Path, text: str) -> ModelMeta:
    try:
        return ModelMeta.from_json(text)
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{path}: unreadable streamdet metadata: {exc}") from exc


def ultralytics_meta(yaml_path: Path) -> ModelMeta:
    """``metadata.yaml`` of an Ultralytics export -> ModelMeta (detect task only)."""
    import yaml

    try:
        data = yaml.safe_load(yaml_path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"{yaml_path}: unreadable metadata ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{yaml_path}: expected a mapping, got {type(data).__name__}")
    task = data.get("task", "detect")
    if task != "detect":
        raise ModelError(f"{yaml_path}: task {task!r} is not supported (detect only)")
    names = data.get("names")
    if isinstance(names, dict):
        names = [str(names[k]) for k in sorted(names, key=int)]
    if not isinstance(names, list) or not names:
        raise ModelError(f"{yaml_path}: 'names' must be a non-empty list or mapping")
    imgsz = data.get("imgsz", [0, 0])
    imgsz = [imgsz, imgsz] if isinstance(imgsz, int) else list(imgsz)
    return ModelMeta("yolo", [str(n) for n in names], (int(imgsz[0]), int(imgsz[1])),
                     extra={"stride": data.get("stride")})


def onnx_props(path: Path) -> dict[str, str]:
    """An ONNX file's ``metadata_props`` without loading its weights."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # unreadable files are reported by OpenVINO itself
        return {}
    return {p.key: p.value for p in model.metadata_props}


def _copies(arrays: list[Any]) -> list[np.ndarray]:
    """Float32 copies of a request's outputs: a request reuses its output
    buffers, so they must be copied before its next call."""
    return [np.array(a, dtype=np.float32 if a.dtype == np.float16 else a.dtype,
                     copy=True) for a in arrays]


class OpenVINOBackend(Backend):
    """Runs an ONNX / IR model with OpenVINO; ``threads`` = inference threads."""

    def __init__(self, path: str | Path, device: str = "cpu",
                 threads: int | None = None, precision: str | None = None) -> None:
        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, "
                             f"got {precision!r}")
        self.requested_precision = precision
        self.precision = ""
        super().__init__(path, device, threads)

    def _model_file(self) -> tuple[Path, ModelMeta | None]:
        path = self.path
        if path.is_dir():
            xmls = sorted(path.glob("*.xml"))
            if len(xmls) != 1:
                raise ModelError(f"{path}: expected one OpenVINO .xml in the folder, "
                                 f"found {[p.name for p in xmls]}")
            yaml_path = path / "metadata.yaml"
            meta = ultralytics_meta(yaml_path) if yaml_path.is_file() else None
            return xmls[0], meta
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        suffix = path.suffix.lower()
        if suffix not in (".onnx", ".xml"):
            raise ModelError(f"{path}: OpenVINO takes .onnx, .xml or an "
                             f"{FOLDER_SUFFIX}/ folder, got {suffix!r}")
        meta = None
        if suffix == ".onnx":
            props = onnx_props(path)
            if META_KEY in props:
                meta = _embedded(path, props[META_KEY])
            self.custom_metadata = props
        return path, meta

    def _beside(self, path: Path) -> ModelMeta | None:
        """Metadata from files beside the model: our sidecar, else Ultralytics'
        ``metadata.yaml``."""
        meta = read_sidecar(path)
        if meta is None and (path.parent / "metadata.yaml").is_file():
            meta = ultralytics_meta(path.parent / "metadata.yaml")
        return meta

    def load(self) -> None:
        import openvino as ov

        kind = self.device.split(":")[0].lower()
        if kind != "cpu":
            raise ModelError(f"{self.path}: device {self.device!r} is not supported "
                             "by the OpenVINO backend (cpu only)")
        self.custom_metadata: dict[str, str] = {}
        model_file, meta = self._model_file()
        core = ov.Core()
        try:
            model = core.read_model(str(model_file))
        except Exception as exc:  # OpenVINO raises RuntimeError with a long trace
            raise ModelError(f"{model_file}: not a loadable OpenVINO/ONNX model "
                             f"({_first_line(exc)})") from exc
        # embedded metadata (ONNX props, IR rt_info) wins over files beside it
        if meta is None and model.has_rt_info([META_KEY]):
            meta = _embedded(model_file,
                             model.get_rt_info([META_KEY]).astype(str))
        if meta is None and not self.path.is_dir():
            meta = self._beside(model_file)
        if len(model.inputs) != 1:
            raise ModelError(f"{model_file}: expected one image input, found "
                             f"{[i.any_name for i in model.inputs]}")
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        hint = self.requested_precision or ("bf16" if "BF16" in capabilities else "f32")
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint,
                                  "PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        self._model, self._config = model, config
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:
            raise ModelError(f"{model_file}: OpenVINO could not compile it "
                             f"({_first_line(exc)})") from exc
        compiled_hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = getattr(compiled_hint, "to_string", compiled_hint.__str__)()
        self.request = self.compiled.create_infer_request()
        self.meta = meta
        self.input_name = model.inputs[0].any_name
        self.input_shape = self._dims(model.inputs[0].get_partial_shape())
        self.output_names = [o.any_name for o in self.compiled.outputs]
        self.output_shapes = [self._dims(o.get_partial_shape())
                              for o in self.compiled.outputs]
        self._allow_parallel_chunks()
        log.info("loaded %s on OpenVINO %s CPU, inference precision %s "
                 "(CPU capabilities %s): input %s %s, outputs %s", model_file.name,
                 ov.__version__, self.precision, capabilities, self.input_name,
                 self.input_shape,
                 dict(zip(self.output_names, self.output_shapes, strict=True)))

    @staticmethod
    def _dims(shape: Any) -> tuple[int | str, ...]:
        return tuple(d.get_length() if d.is_static else "?" for d in shape)

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = np.ascontiguousarray(batch, np.float32)
        if self._chunked(batch):
            return self._infer_chunks(batch)
        results = self.request.infer({0: batch})
        return _copies([results[o] for o in self.compiled.outputs])

    def _open_chunk_runner(self) -> None:
        """A copy compiled with one stream (one thread) per worker, and one
        request per worker, handed out through a queue (requests are not
        thread-safe; the compiled model is)."""
        import openvino as ov

        config = {**self._config, "NUM_STREAMS": self.workers,
                  "INFERENCE_NUM_THREADS": self.workers}
        config.pop("PERFORMANCE_HINT")
        compiled = ov.Core().compile_model(self._model, "CPU", config)
        for _ in range(self.workers):
            self._requests.put(compiled.create_infer_request())

    def _run_chunk(self, chunk: np.ndarray) -> list[np.ndarray]:
        request = self._requests.get()
        try:
            request.infer({0: chunk})  # releases the GIL
            return _copies([t.data for t in request.output_tensors])
        finally:
            self._requests.put(request)

    def describe(self) -> dict[str, Any]:
        return {"backend": "openvino", "precision": self.precision,
                "threads": self.threads}

    def close(self) -> None:
        self._close_chunks()
        self._requests = queue.SimpleQueue()
        self.request = None
        self.compiled = None


def save_ir(onnx_path: str | Path, out_dir: str | Path, meta: ModelMeta | None = None
            ) -> Path:
    """Convert an ONNX to OpenVINO IR ``out_dir/STEM.xml`` (+ ``.bin``), keeping
    the streamdet metadata in the IR's ``rt_info``. Weights stay fp32 (OpenVINO
    compresses to fp16 by default; the inference precision is chosen at load)."""
    import openvino as ov

    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    model = ov.convert_model(str(onnx_path))
    props = onnx_props(onnx_path)
    text = meta.to_json() if meta else props.get(META_KEY)
    if text:
        model.set_rt_info(text, [META_KEY])
    out_dir.mkdir(parents=True, exist_ok=True)
    xml = out_dir / f"{onnx_path.stem}.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)
    if text:
        write_sidecar(xml, ModelMeta.from_json(text))
    return xml
