"""Device drivers: `Camera` and `Robot` protocols (`drivers.base`), the MuJoCo world (`drivers.sim`).

Plain blocking code; nothing here imports `agent` or `models`.
"""
