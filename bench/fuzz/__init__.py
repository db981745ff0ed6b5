"""Coverage-guided fuzzing of zgoda's decoders with atheris (libFuzzer), minutes not CI.

    .venv/bin/pip install -e '.[fuzz]'
    .venv/bin/python -m bench.fuzz.codec --seconds 300
    .venv/bin/python -m bench.fuzz.attestation --seconds 300
    .venv/bin/python -m bench.fuzz.codes --seconds 300
    .venv/bin/python -m bench.fuzz.relay_ws --seconds 120    # a real relay process

Each harness runs libFuzzer in a child process for `--seconds`, then prints one line:
inputs tried, crashes found, and where crash inputs were written. A "crash" is any
exception other than the documented errors of the function under test.
"""
