"""Device drivers: `Camera` and `Robot` protocols (`drivers.base`) and their implementations.

The MuJoCo world (`drivers.sim`), the Franka arm (`drivers.franka`: franky-control, panda-python),
the real cameras (`drivers.cameras`: RealSense, Azure Kinect, their capture thread, frame
pairing). Plain blocking code; nothing here imports `agent` or `models`, and vendor SDKs are
imported only when a driver is opened.
"""
