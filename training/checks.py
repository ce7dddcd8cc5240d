"""Checks on a converted `.tflite` through a LiteRT / TF Lite interpreter (TensorFlow-free).

Every function takes an already-constructed interpreter (`ai_edge_litert.interpreter.Interpreter` or
`tf.lite.Interpreter`; both expose the same API), so this module imports neither.
"""

from __future__ import annotations

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
    float inputs/outputs (feeding QUANTIZE / fed by DEQUANTIZE); every constant 2-D weight tensor must be int8,
    and there must be at least one.
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
            if len(shape_sig) == 2 and all(s > 0 for s in shape_sig) and t["index"] not in io:
                n_weights += 1
                if dtype != np.int8:
                    issues.append(f"weight tensor {t['name']!r} {shape_sig} is {dtype.name}, not int8")
        if n_weights == 0:
            issues.append("no constant 2-D weight tensors found")
        problems[key] = issues
    return problems


def assert_all_int8(interp: Any) -> None:
    """Raise RuntimeError naming every signature whose kernels are not int8."""
    bad = {k: v for k, v in int8_problems(interp).items() if v}
    if bad:
        lines = [f"{k}: {'; '.join(v[:5])}" for k, v in bad.items()]
        raise RuntimeError("model is not full-integer int8 in every signature:\n" + "\n".join(lines))


def run(interp: Any, signature: str, x: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
    """Run `signature` on rows `x` (float32 [n, F]) in batches; returns each output concatenated over rows."""
    runner = interp.get_signature_runner(signature)
    (in_name,) = runner.get_input_details()
    parts: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(x), batch):
        res = runner(**{in_name: np.ascontiguousarray(x[i : i + batch], dtype=np.float32)})
        for k, v in res.items():
            parts.setdefault(k, []).append(np.array(v))
    return {k: np.concatenate(v, axis=0) for k, v in parts.items()}
