"""Running one tool call: validate the arguments, run the tool under a timeout, check the result.

Rule: whatever the tool does (raise, even ``SystemExit`` or ``KeyboardInterrupt``, hang, return an object
no JSON can hold), the caller gets either a JSON-serialisable value or a ``ToolError``; nothing else
escapes but the caller's own cancellation, so the kernel cannot be crashed by a tool. A sync tool runs
in a worker thread (anyio hands any exception it raises there, ``SystemExit`` included, back to the
caller); on timeout the thread is abandoned (Python cannot stop it), which is why a tool that must be
stoppable should be ``async`` or run a subprocess.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import anyio

from llmasos.syscalls.errors import SyscallError, ToolError
from llmasos.tools.errors import ToolFailed, ToolResultInvalid, ToolTimeout
from llmasos.tools.limits import TOOL_LIMITS
from llmasos.tools.registry import Tool, ToolContext


async def invoke(t: Tool, arguments: dict[str, Any] | None, ctx: ToolContext | None = None,
                 timeout: float | None = None) -> Any:
    """Run tool t with arguments; return its JSON-serialisable result or raise a ToolError."""
    args = t.validate(arguments)
    if t.context_param is not None:
        args[t.context_param] = ctx if ctx is not None else ToolContext()
    limit = t.timeout if timeout is None else timeout
    if limit is not None and limit <= 0:
        raise ToolTimeout(f"tool {t.name}: a timeout must be positive, not {limit}")
    try:
        with anyio.fail_after(limit):
            if t.is_async:
                result = await t.fn(**args)
            else:
                result = await anyio.to_thread.run_sync(
                    functools.partial(t.fn, **args), abandon_on_cancel=True)
    except TimeoutError as exc:
        if isinstance(exc, ToolError):  # the tool raised a ToolTimeout of its own
            raise
        raise ToolTimeout(f"tool {t.name} did not finish within {limit}s; "
                          "simplify the request or ask for a longer timeout") from None
    except (SyscallError, anyio.get_cancelled_exc_class()):
        raise  # a ToolError the tool chose, a syscall it made that failed, or a kill
    except SystemExit as exc:  # an argparse-based tool given arguments it does not accept exits
        raise ToolFailed(f"tool {t.name} exited (SystemExit {exc.code!r}) instead of returning; check the "
                         "arguments against its schema") from exc
    except BaseException as exc:  # KeyboardInterrupt, GeneratorExit...: a failure of this call, no more
        raise ToolFailed(f"tool {t.name} failed: {type(exc).__name__}: {exc}") from exc
    return check_result(t.name, result)


def check_result(name: str, result: Any) -> Any:
    """result if it survives a JSON round trip unchanged in kind; ToolResultInvalid otherwise."""
    try:
        text = json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ToolResultInvalid(
            f"tool {name} returned a {type(result).__name__}, which is not JSON-serialisable ({exc}); "
            "a tool must return str, numbers, bools, None, lists or dicts of those") from None
    if len(text) > TOOL_LIMITS.result_chars:
        raise ToolResultInvalid(f"tool {name} returned {len(text)} characters of JSON; "
                                f"the limit is {TOOL_LIMITS.result_chars}: return less")
    return json.loads(text)  # a plain copy: tuples become lists, no shared mutable state
