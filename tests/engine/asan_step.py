"""Run by test_quant.py in a child process with libasan and libubsan preloaded: the whole native step
(llama_decode.c, attention.c, quant.c) built with AddressSanitizer and UndefinedBehaviorSanitizer, decodes of
five rows (a pass of four and one of one; on the VNNI path quant.c's section 3c) and of seventeen
(on the VNNI path: section 3b, a group of 16 and a partial one; int8 activations in the step's scratch)
at three columns, on an fp32 and a bf16 KV cache, then one row over 150 columns of each (on two
threads, two 75-column parts: a whole 64-column tile, then 11 columns, eight at a time and three
alone), and the attached layers' products (QuantLinear, its own activation buffer) for 3 and 40 rows,
in every weight format on every instruction-set path this CPU runs. Prints "FORMAT ISA ok" per path; a
bad access aborts it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch

from llmasos.engine import native, nativelib, quant
from llmasos.engine.kvbatch import LayerBuffers

nativelib.CFLAGS = (*nativelib.CFLAGS, "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                 "-fno-omit-frame-pointer")

from tests.engine.test_quant import dequantized_llama


def main() -> None:
    isas = quant.ISAS[: quant.ISAS.index(native.best_isa()) + 1]
    for fmt in ("fp32", "q4_1", "q8_0", "bf16"):
        for isa in isas if fmt != "fp32" else isas[-1:]:
            model = dequantized_llama("q8_0" if fmt == "fp32" else fmt)
            step = native.NativeLlama(model, fmt, isa=isa)
            for rows, kv in ((5, torch.float32), (17, torch.float32), (5, torch.bfloat16), (17, torch.bfloat16)):
                keys = LayerBuffers(torch.zeros(rows, 2, 8, 16, dtype=kv) for _ in range(2))
                values = LayerBuffers(torch.zeros(rows, 2, 8, 16, dtype=kv) for _ in range(2))
                tokens = [1, 2, 300, 0, 7, *range(9, 9 + rows - 5)]
                for col in range(3):
                    first = [0, 0, col, 0, 1 if col else 0, *[col % 2] * (rows - 5)]
                    step.decode(tokens, [col] * rows, first, keys, values, col)
            for kv in (torch.float32, torch.bfloat16):  # the last column of exactly 150: 64 + 64 + 22
                keys = LayerBuffers(torch.randn(1, 2, 150, 16).to(kv) for _ in range(2))
                values = LayerBuffers(torch.randn(1, 2, 150, 16).to(kv) for _ in range(2))
                step.decode([5], [149], [0], keys, values, 149)
            step.attach(model)
            with torch.inference_mode():
                for rows in (3, 40):
                    model.model.layers[1].mlp(torch.randn(1, rows, 64))
            print(fmt, isa, "ok", flush=True)


if __name__ == "__main__":
    main()
