"""hello-store: an example third-party llmasos app package (its manifest is the App(...) line: literal
values only, so the installer reads it without running this file)."""

from __future__ import annotations

from llmasos import App, Sys

app = App("hello-store", "Greets someone, counts with the calculator, asks the model for a wish",
          version="0.1.0", tools=["calculator"], memory=["greetings"], can_spawn=False)


@app.main
async def main(sys: Sys, who: str = "world") -> str:
    await sys.print(f"hello, {who}")
    answer = await sys.call_tool("calculator", {"expression": "6*7"})
    await sys.print(f"6*7 = {answer}")
    wish = await sys.generate(f"Write a one-line wish for {who}.", max_tokens=24)
    await sys.memory.set(who, wish.text, namespace="greetings")
    return wish.text.strip()
