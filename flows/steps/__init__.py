"""The build's steps, one module each: `run(ctx) -> <Step>Result` (flows/results.py).

    train -> structure -> prune -> share -> encode -> qat -> export -> convert -> csim -> synth -> report

Which of them a build runs, and in which named list, is decided in `flows/flow.py`; how they are
cached and resumed in `flows/pipeline.py`. A step reads the config, the build context and the typed
results of the steps before it (`ctx.results`), writes only its own artifacts, and returns its result.
"""
