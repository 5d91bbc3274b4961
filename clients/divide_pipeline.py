"""The pipeline both client examples run: `divide` computes a / b, and fails when b is 0, so
that a client can show a run that succeeds and one that fails.

Compile it with the kfp SDK: `python3 divide_pipeline.py OUT.yaml`. The Node example's test
uses the compiled copy clients/node/test/divide.yaml (tests/test_clients.py checks that it is
what this file compiles to).
"""

import sys

from kfp import compiler, dsl


# A pinned image keeps the compiled spec stable across kfp releases (the local executor of
# kfpgrpc does not pull it anyway).
@dsl.component(base_image="python:3.11")
def divide(a: float, b: float) -> float:
    return a / b


@dsl.pipeline(name="divide", description="Divides a by b; fails when b is 0.")
def divide_pipeline(a: float = 1.0, b: float = 4.0):
    divide(a=a, b=b)


if __name__ == "__main__":
    compiler.Compiler().compile(divide_pipeline, sys.argv[1])
