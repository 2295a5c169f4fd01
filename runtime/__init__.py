"""irdeploy.runtime: backends, engine builds, parity checks, benchmarks and the command line.

The code that runs a serialized engine must not need torch: modules here import it lazily.
"""
