"""Run by test_quant.py in a child process with libasan and libubsan preloaded: the whole native step
(llama_decode.c + quant.c) built with AddressSanitizer and UndefinedBehaviorSanitizer, one decode of
five rows (a pass of four and one of one) at three columns, in every weight format on every
instruction-set path this CPU runs. Prints "FORMAT ISA ok" per path; a bad access aborts it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from llmasos.engine import native, quant  # noqa: E402
from llmasos.engine.kvbatch import LayerBuffers  # noqa: E402

native.CFLAGS = (*native.CFLAGS, "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                 "-fno-omit-frame-pointer")

from tests.engine.test_quant import dequantized_llama  # noqa: E402


def main() -> None:
    isas = quant.ISAS[: quant.ISAS.index(native.best_isa()) + 1]
    for fmt in ("fp32", "q4_1", "q8_0", "bf16"):
        for isa in isas if fmt != "fp32" else isas[-1:]:
            step = native.NativeLlama(dequantized_llama("q8_0" if fmt == "fp32" else fmt), fmt, isa=isa)
            keys = LayerBuffers(torch.zeros(5, 2, 8, 16) for _ in range(2))
            values = LayerBuffers(torch.zeros(5, 2, 8, 16) for _ in range(2))
            for col in range(3):
                step.decode([1, 2, 300, 0, 7], [col] * 5, [0, 0, col, 0, 1 if col else 0], keys, values, col)
            print(fmt, isa, "ok", flush=True)


if __name__ == "__main__":
    main()
