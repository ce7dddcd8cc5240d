"""Checks on a converted `.tflite` through a LiteRT / TF Lite interpreter (TensorFlow-free): the signature block,
int8 kernels of every signature, running a signature over many rows.

The checks take an already-constructed interpreter (`ai_edge_litert.interpreter.Interpreter` or
`tf.lite.Interpreter`; both expose the same API); `interpreter` picks the one the process can load.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

# In a full-integer model with float32 I/O, only a signature's own inputs/outputs may have these dtypes.
_IO_DTYPES = {np.dtype(np.float32)}


def signature_block(interp: Any) -> dict[str, Any]:
    """The manifest's `signatures` block, read from the interpreter's signature runners (the truth)."""
    out: dict[str, Any] = {}
    for key in sorted(interp.get_signature_list()):
        runner = interp.get_signature_runner(key)
        out[key] = {
            "inputs": {n: _tensor_spec(d) for n, d in sorted(runner.get_input_details().items())},
            "outputs": {n: _tensor_spec(d) for n, d in sorted(runner.get_output_details().items())},
        }
    return out


def _tensor_spec(d: dict[str, Any]) -> dict[str, Any]:
    shape = d.get("shape_signature")
    if shape is None or len(shape) == 0:
        shape = d["shape"]
    return {"dtype": np.dtype(d["dtype"]).name, "shape": [int(s) for s in shape]}


def int8_problems(interp: Any) -> dict[str, list[str]]:
    """For each signature, the reasons its kernels are not full-integer int8 (empty list = all int8).

    In a full-integer model with float32 I/O, the only float32 tensors of a signature's subgraph are its own
    float inputs/outputs (feeding QUANTIZE / fed by DEQUANTIZE); every static-shape tensor of rank >= 2 (dense and
    convolution weights) must be int8, and there must be at least one.
    """
    problems: dict[str, list[str]] = {}
    for key in sorted(interp.get_signature_list()):
        runner = interp.get_signature_runner(key)
        # The runner knows which subgraph implements the signature; the public API does not expose it.
        sub = int(runner._subgraph_index)
        io = {d["index"] for d in runner.get_input_details().values()}
        io |= {d["index"] for d in runner.get_output_details().values()}
        issues: list[str] = []
        n_weights = 0
        for t in interp.get_tensor_details(sub):
            dtype = np.dtype(t["dtype"])
            shape_sig = [int(s) for s in t.get("shape_signature", t["shape"])]
            if dtype in _IO_DTYPES and t["index"] not in io:
                issues.append(f"float tensor {t['name']!r} {shape_sig} inside the graph")
            if len(shape_sig) >= 2 and all(s > 0 for s in shape_sig) and t["index"] not in io:
                n_weights += 1
                if dtype != np.int8:
                    issues.append(f"weight tensor {t['name']!r} {shape_sig} is {dtype.name}, not int8")
        if n_weights == 0:
            issues.append("no constant weight tensors found")
        problems[key] = issues
    return problems


def assert_all_int8(interp: Any) -> None:
    """Raise RuntimeError naming every signature whose kernels are not int8."""
    bad = {k: v for k, v in int8_problems(interp).items() if v}
    if bad:
        lines = [f"{k}: {'; '.join(v[:5])}" for k, v in bad.items()]
        raise RuntimeError("model is not full-integer int8 in every signature:\n" + "\n".join(lines))


def run(interp: Any, signature: str, x: np.ndarray | dict[str, np.ndarray], batch: int = 256) -> dict[str, np.ndarray]:
    """Run `signature` on rows in batches: `x` maps input names to arrays (or is the one input's float32 rows);
    returns each output concatenated over rows."""
    runner = interp.get_signature_runner(signature)
    if not isinstance(x, dict):
        (in_name,) = runner.get_input_details()
        x = {in_name: np.asarray(x, dtype=np.float32)}
    n = len(next(iter(x.values())))
    parts: dict[str, list[np.ndarray]] = {}
    for i in range(0, n, batch):
        res = runner(**{k: np.ascontiguousarray(v[i : i + batch]) for k, v in x.items()})
        for k, v in res.items():
            parts.setdefault(k, []).append(np.array(v))
    return {k: np.concatenate(v, axis=0) for k, v in parts.items()}


def interpreter(content: bytes) -> Any:
    """A one-thread interpreter: TensorFlow's when TensorFlow is loaded, else LiteRT's.

    LiteRT imported after TensorFlow fails (both register the same pybind11 types) and the half-loaded module aborts
    the process at exit, so a process that converts uses `tf.lite.Interpreter` (unless LiteRT came first, as in
    training.retrain).
    """
    if "tensorflow" in sys.modules and "ai_edge_litert.interpreter" not in sys.modules:
        import tensorflow as tf

        return tf.lite.Interpreter(model_content=content, num_threads=1)
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=content, num_threads=1)
