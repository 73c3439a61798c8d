"""Model adapters, one subpackage per role (reasoning, detection, tracking, segmentation, policy).

Each role has a small Protocol in its `base` module and backends chosen by name in the config.
Heavy dependencies are imported inside the backend that needs them, so this package imports fast.
Nothing here imports `agent` or `drivers`.
"""
