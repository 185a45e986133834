"""The user commands behind `python -m vslrepro`: leaves of the package that nothing else imports.

`check` (a data copy's preflight), `audit` (train/test leakage), `prepare` (raw videos → frames and
WAVs), `localize` (one user clip through a checkpoint) and `bench` (throughput benchmarks).
"""
