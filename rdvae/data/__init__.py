"""Image data: its sources and its batching on the device."""
