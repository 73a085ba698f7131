"""Templates compile one at a time, also those Jinja loads while rendering (a parent
template, an imported macro file): CPython 3.11 can raise "AST constructor recursion
depth mismatch" when several threads compile at once, as a threaded WSGI server's
first requests would.  Sixteen threads load every template of a new environment at
once; the compiler never runs in two of them together."""

from __future__ import annotations

import threading
import time
from importlib import resources
from typing import Any

from samtycke_plugin import render


def _names() -> list[str]:
    folder = resources.files("samtycke_plugin") / "templates" / "samtycke"
    return sorted(
        f"samtycke/{p.name}" for p in folder.iterdir() if p.name.endswith((".html", ".txt"))
    )


def test_templates_compile_one_at_a_time_from_many_threads() -> None:
    names = _names()
    assert "samtycke/practice_layout.html" in names
    env = render.environment.__wrapped__("sv")  # a new environment: nothing compiled yet
    compile_template = env.compile
    state = {"now": 0, "most": 0, "calls": 0}
    guard = threading.Lock()

    def watched(*args: Any, **kwargs: Any) -> Any:
        with guard:
            state["now"] += 1
            state["calls"] += 1
            state["most"] = max(state["most"], state["now"])
        try:
            time.sleep(0.002)  # widen the window another thread could compile in
            return compile_template(*args, **kwargs)
        finally:
            with guard:
                state["now"] -= 1

    env.compile = watched  # type: ignore[method-assign]
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def load() -> None:
        try:
            barrier.wait()
            for name in names:
                env.get_template(name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads)
    assert errors == []
    assert state["calls"] >= len(names)
    assert state["most"] == 1
