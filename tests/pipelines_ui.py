"""Pipelines the web UI's run page is tested with (tests/test_ui_run.py), written with the kfp
SDK. No `from __future__ import annotations`: the SDK reads the components' annotations as types."""

from kfp import dsl

IMAGE = "python:3.11"


@dsl.component(base_image=IMAGE)
def coin() -> str:
    return "heads"


@dsl.component(base_image=IMAGE)
def say(msg: str) -> str:
    print(msg)
    return msg


@dsl.component(base_image=IMAGE)
def square(i: int) -> int:
    print(f"squaring {i}")
    return i * i


@dsl.pipeline(name="condition-and-loop")
def condition_and_loop():
    """A condition whose else branch is not taken (SKIPPED) and a loop of two-task bodies."""
    flipped = coin()
    with dsl.If(flipped.output == "heads", name="heads"):
        say(msg="heads!")
    with dsl.Else(name="tails"):
        say(msg="tails!")
    with dsl.ParallelFor([1, 2, 3]) as i:
        squared = square(i=i).after(flipped)
        say(msg="squared").after(squared)


@dsl.component(base_image=IMAGE)
def ticker(count: int, interval: float):
    """Prints `count` lines, one per `interval` seconds, the first in green (an ANSI colour)."""
    import time

    for n in range(count):
        colour = "\x1b[32m" if n == 0 else ""
        print(f"{colour}tick {n}\x1b[0m", flush=True)
        time.sleep(interval)


@dsl.pipeline(name="ticking")
def ticking(count: int = 10, interval: float = 0.3):
    ticker(count=count, interval=interval)


@dsl.component(base_image=IMAGE)
def sleep_for(seconds: float):
    import time

    time.sleep(seconds)


@dsl.pipeline(name="sleeping")
def sleeping(seconds: float = 120.0):
    sleep_for(seconds=seconds)


@dsl.component(base_image=IMAGE)
def chatty(lines: int):
    for n in range(lines):
        print(f"line {n}")


@dsl.pipeline(name="chattering")
def chattering(lines: int = 2500):
    chatty(lines=lines)


@dsl.component(base_image=IMAGE)
def give_up():
    raise RuntimeError("giving up")


@dsl.pipeline(name="stops-early")
def stops_early():
    """A failing task with a task after it: the run fails before that task starts."""
    say(msg="never").after(give_up())
